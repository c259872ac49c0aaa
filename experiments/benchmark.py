"""Benchmarks: the CPU protocol (accuracy and speed per method) and the input pipeline.

    python experiments/benchmark.py --protocol=cpu_small --methods=simclr,moco_v2 \
        --data=../shared/data/cifar10
    python experiments/benchmark.py --what=pipeline --data=../shared/data/cifar10
    python experiments/benchmark.py --what=kernels
    python experiments/benchmark.py --what=versus_lightly --data=../shared/data/cifar10 \
        --lightly_python=/tmp/lightly_venv/bin/python --repeats=2
    python experiments/benchmark.py --what=floor --seeds=0,1,2
    python experiments/benchmark.py --protocol=cpu_small_longtail \
        --methods=npid,npid_cld --seeds=0,1,2 --data=../shared/data/cifar10

The protocol (shared/reference/published-results.md) trains each method with
its `cifar10_cpu_small` preset and records kNN top-1, training seconds and
training images/s in experiments/results/cpu_small.json; the README table
between the `results` markers is regenerated from that file, never typed.

`cpu_small_longtail` is the same protocol on CIFAR-10-LT: class c keeps its
first floor(1000 * 100^(-c/9)) images (1000, 599, ..., 10: 2,478 images), and
the epochs are raised so the run takes as many optimizer steps as the balanced
protocol (10 epochs x 39 steps = 390; 2,478 // 256 = 9 steps per epoch, so 43
epochs, 387 steps; warm-up epochs are rescaled alike, 5 -> 22). kNN uses the long-tailed training images as its bank and
the balanced test split. Each method runs once per `--seeds` entry; results go
to experiments/results/longtail.json and the README table between the
`longtail` markers (mean +- sample std over seeds).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_ssl  # noqa: E402,F401  (sets TensorFlow's environment first)
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("what", "protocol",
                  ["protocol", "pipeline", "kernels", "speed", "evaluation", "floor",
                   "sharded_classifier", "versus_lightly", "semi_supervised", "continual"],
                  "What to measure.")
flags.DEFINE_enum("protocol", "cpu_small", ["cpu_small", "cpu_small_longtail"],
                  "Training protocol.")
flags.DEFINE_list("methods", ["simclr", "moco_v2", "npid", "byol"], "Methods to run.")
flags.DEFINE_string("data", "../shared/data/cifar10", "CIFAR-10 image folder.")
flags.DEFINE_string("work_dir", "/tmp/keras_ssl_benchmark", "Model dirs of the runs.")
flags.DEFINE_integer("seed", 0, "Seed of each run.")
flags.DEFINE_boolean("shifted_knn", True,
                     "Protocol runs also report kNN on the background-shifted test split.")
flags.DEFINE_list("seeds", None, "Seeds to run (default: --seed); tables give mean ± std.")
flags.DEFINE_integer("epochs", 0, "Override the protocol's epochs (0: keep; for smoke runs).")
flags.DEFINE_string("baseline_tree", None,
                    "--what=speed: another checkout of keras_ssl (e.g. a `git worktree` of an "
                    "older commit) measured beside this one, alternating, for a before/after "
                    "table.")
flags.DEFINE_integer("repeats", 1, "--what=speed, versus_lightly: measurements per method "
                     "(fresh processes); the table gives their median.")
flags.DEFINE_string("lightly_python", None,
                    "--what=versus_lightly: an interpreter that imports lightly and torchvision "
                    "(e.g. /tmp/lightly_venv/bin/python); without one only keras_ssl runs.")
flags.DEFINE_boolean("fused_batch_norm", True,
                     "--what=versus_lightly: keras_ssl's backbone BatchNorm through the fused "
                     "kernel, beside a run with the defaults.")
flags.DEFINE_list("rows", None, "--what=semi_supervised: rows to run (default: all), "
                  "--what=continual: variants (default: all); see semi_supervised_benchmark.py.")
flags.DEFINE_boolean("write_readme", True, "Regenerate the README results table.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results")
README = os.path.join(ROOT, "README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"
PIPELINE_START, PIPELINE_END = "<!-- pipeline:start -->", "<!-- pipeline:end -->"
KERNELS_START, KERNELS_END = "<!-- kernels:start -->", "<!-- kernels:end -->"
LONGTAIL_START, LONGTAIL_END = "<!-- longtail:start -->", "<!-- longtail:end -->"
SPEED_START, SPEED_END = "<!-- speed:start -->", "<!-- speed:end -->"
EVALUATION_START, EVALUATION_END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"
FLOOR_START, FLOOR_END = "<!-- floor:start -->", "<!-- floor:end -->"
BACKGROUND_START, BACKGROUND_END = "<!-- background:start -->", "<!-- background:end -->"
SHARDED_START, SHARDED_END = "<!-- sharded:start -->", "<!-- sharded:end -->"
VERSUS_START, VERSUS_END = "<!-- versus_lightly:start -->", "<!-- versus_lightly:end -->"
PLOTS = os.path.join(ROOT, "docs", "images")
# CIFAR-10-LT of the long-tail protocol: ratio 100, head class 1,000 images.
LONGTAIL = dict(imbalance_ratio=100.0, train_per_class=1000, num_classes=10)

# lightly 1.6.0 on the same protocol and machine type (published-results.md).
LIGHTLY = {"simclr": (0.405, 137), "moco_v2": (0.374, 174), "byol": (0.298, 112)}


def run_protocol():
    from keras_ssl import configs
    path = os.path.join(RESULTS, "cpu_small.json")
    results = _load_by_seed(path)
    seeds = [int(seed) for seed in (FLAGS.seeds or [FLAGS.seed])]
    for name in FLAGS.methods:
        method, config = protocol_config(name)
        entry = configs.get("cifar10_cpu_small", method)
        for seed in seeds:
            result = _fresh_run(method, entry, config, seed, f"{name}_seed{seed}")
            if not FLAGS.epochs:
                results = _record(path, name, seed, result, _load_by_seed)
    if FLAGS.write_readme and not FLAGS.epochs:
        write_readme_table(results)
        write_background_table(results)


def protocol_config(name):
    """(registry method, pretrain flags) of a protocol row.

    ``METHOD+background`` is the method with every background op its preset
    gives a probability (`keras_ssl.configs.background`).
    """
    from keras_ssl import configs
    method, _, variant = name.partition("+")
    config = dict(configs.get("cifar10_cpu_small", method)["flags"])
    if FLAGS.epochs:
        config["epochs"] = FLAGS.epochs
    config["shifted_knn"] = FLAGS.shifted_knn
    if variant == "background":
        probabilities = configs.background(method)
        ops = {"rm": probabilities.get("remove"), "random": probabilities.get("random"),
               "swaps": probabilities.get("swap_negative") or probabilities.get("swap_positive")}
        config["background"] = tuple(op for op, p in ops.items() if p)
        if not config["background"]:
            raise ValueError(f"--methods={name}: {method} has no background preset.")
    elif variant:
        raise ValueError(f"--methods={name}: the only variant is METHOD+background.")
    return method, config


def write_background_table(results):
    """Methods with and without background augmentation, kNN on the normal and shifted test."""
    import numpy as np
    rows = [name for name in sorted(results) if name.endswith("+background")]
    lines = ["| method | background ops | seeds | kNN top-1 | shifted-background kNN top-1 |",
             "| --- | --- | --- | --- | --- |"]
    for name in rows:
        for row in (name.partition("+")[0], name):
            runs = list(results.get(row, {}).values())
            if not runs:
                continue
            _, top1 = _top1_over_seeds(runs)
            shifted = [run.get("knn_top1_background_shifted") for run in runs]
            shifted_text = "not measured"
            if all(value is not None for value in shifted):
                values = 100 * np.array(shifted)
                shifted_text = f"{values.mean():.1f}%" + (
                    f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else "")
            ops = ", ".join(protocol_config(row)[1].get("background", ())) or "none"
            lines.append(f"| {row} | {ops} | {len(runs)} | {top1} | {shifted_text} |")
    _replace_between(BACKGROUND_START, BACKGROUND_END, lines)


def _fresh_run(method, entry, config, seed, run_name):
    """One preset run from scratch in work_dir/run_name; prints and returns its result."""
    import shutil
    from keras_ssl.training import pretrain
    model_dir = os.path.join(FLAGS.work_dir, run_name)
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)  # a benchmark times a fresh run, never a resume
    result = pretrain(method=method, data=FLAGS.data, seed=seed, model_dir=model_dir,
                      verbose=2, method_kwargs=entry["method"],
                      view_kwargs=entry["views"], **config)
    print(json.dumps(result), flush=True)
    return result


def _record(path, method, seed, result, load):
    """Adds one seed's result to a {method: {seed: result}} file; returns the file's content.

    Re-reads first: another benchmark process may have added its runs.
    """
    results = load(path)
    results.setdefault(method, {})[str(seed)] = result
    _save(path, results)
    return results


def _load_by_seed(path):
    """cpu_small.json as {method: {seed: result}} (older files held seed 0 only)."""
    results = _load(path)
    return {method: ({"0": runs} if "knn_top1" in runs else runs)
            for method, runs in results.items()}


def longtail_config(balanced_flags):
    """Flags of the long-tail variant: same steps as the balanced protocol.

    Returns (flags, expected number of training images).
    """
    from keras_ssl.data.subsets import long_tail_counts
    batch = balanced_flags["global_batch_size"]
    balanced_steps_per_epoch = (balanced_flags["train_per_class"]
                                * LONGTAIL["num_classes"] // batch)
    images = sum(long_tail_counts(LONGTAIL["num_classes"], LONGTAIL["train_per_class"],
                                  LONGTAIL["imbalance_ratio"]))
    steps_per_epoch = images // batch  # drop_remainder, as the training pipeline
    # Epochs, and warm-up epochs, rescaled so both span the balanced run's steps.
    scale = balanced_steps_per_epoch / steps_per_epoch
    epochs = max(1, round(balanced_flags["epochs"] * scale))
    warmup_epochs = round(balanced_flags.get("warmup_epochs", 0) * scale)
    return dict(balanced_flags, imbalance_ratio=LONGTAIL["imbalance_ratio"],
                train_per_class=LONGTAIL["train_per_class"], epochs=epochs,
                warmup_epochs=warmup_epochs), images


def run_longtail():
    from keras_ssl import configs
    path = os.path.join(RESULTS, "longtail.json")
    results = _load(path)
    seeds = [int(seed) for seed in (FLAGS.seeds or [FLAGS.seed])]
    for method in FLAGS.methods:
        entry = configs.get("cifar10_cpu_small", method)
        config, expected_images = longtail_config(entry["flags"])
        if FLAGS.epochs:
            config["epochs"] = FLAGS.epochs
        for seed in seeds:
            result = _fresh_run(method, entry, config, seed,
                                f"longtail_{method}_seed{seed}")
            if result["train_images"] != expected_images:
                raise ValueError(f"the long-tail subset has {result['train_images']} "
                                 f"images, expected {expected_images}; is --data CIFAR-10?")
            if not FLAGS.epochs:
                results = _record(path, method, seed, result, _load)
    if FLAGS.write_readme and not FLAGS.epochs:
        write_longtail_table(results)


def write_longtail_table(results):
    """README table: mean +- sample std over seeds of kNN top-1, mean train seconds."""
    import numpy as np
    lines = ["| method | seeds | kNN top-1 (mean ± std) | epochs | train seconds (mean) |",
             "| --- | --- | --- | --- | --- |"]
    for method in sorted(results):
        runs = [results[method][seed] for seed in sorted(results[method], key=int)]
        _, top1 = _top1_over_seeds(runs)
        one_seed = " (one seed)" if len(runs) == 1 else ""
        lines.append(f"| {method} | {len(runs)} | {top1}{one_seed} | "
                     f"{runs[0]['epochs']} | "
                     f"{np.mean([r['train_seconds'] for r in runs]):.0f} |")
    _replace_between(LONGTAIL_START, LONGTAIL_END, lines)


def run_pipeline():
    from experiments.pipeline_benchmark import measure_pipeline
    from keras_ssl.augment.background_views import BackgroundConfig
    path = os.path.join(RESULTS, "pipeline.json")
    results = _load(path)
    data = os.path.join(FLAGS.data, "train")
    for recipe in ("simclr", "multi_crop"):
        results[recipe] = measure_pipeline(recipe, data)
        print(json.dumps({recipe: results[recipe]}), flush=True)
    # MoCo v2's two views with each background op on every view (p = 1, the
    # worst case), and with the preset's probabilities, beside the plain recipe.
    backgrounds = {"none": None, "rm": BackgroundConfig(remove=1.0),
                   "random": BackgroundConfig(random=1.0),
                   "swaps": BackgroundConfig(swap_positive=1.0, swap_negative=1.0),
                   "preset": BackgroundConfig(remove=0.2, random=0.1, swap_positive=0.1,
                                              swap_negative=1.0)}
    for name, config in backgrounds.items():
        key = f"moco_v2_background_{name}"
        results[key] = measure_pipeline("moco_v2", data, background=config,
                                        recipe_kwargs={"blur": False})
        print(json.dumps({key: results[key]}), flush=True)
    _save(path, results)
    lines = ["| views | keras_ssl images/s | images per CPU-second | lightly images/s |",
             "| --- | --- | --- | --- |",
             f"| two 32-px views | {results['simclr']['images_per_s']:.0f} | "
             f"{results['simclr']['images_per_cpu_s']:.0f} | 1,042 |",
             f"| multi-crop 2x32 + 6x16 | {results['multi_crop']['images_per_s']:.0f} | "
             f"{results['multi_crop']['images_per_cpu_s']:.0f} | 343 |"]
    labels = {"none": "no background op", "rm": "BG_RM on every view",
              "random": "BG_Random on every view",
              "swaps": "BG_Swaps on every row (+ extra negative view)",
              "preset": "the preset (RM 0.2, Random 0.1, Swaps 0.1 / 1.0)"}
    for name, label in labels.items():
        result = results[f"moco_v2_background_{name}"]
        lines.append(f"| MoCo v2 pair, {label} | {result['images_per_s']:.0f} | "
                     f"{result['images_per_cpu_s']:.0f} | n/a |")
    _replace_between(PIPELINE_START, PIPELINE_END, lines)


def run_sharded_classifier():
    """The sharded classifier alone: step time and state per replica, N x replicas."""
    from experiments.machine import machine
    from experiments.sharded_classifier_benchmark import run_all
    path = os.path.join(RESULTS, "sharded_classifier.json")
    results = run_all()
    _save(path, {"cases": results, "machine": machine()})
    lines = ["| classes N | replicas | rows per replica | classifier state per replica "
             "| step ms (2 shared CPU cores) |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['num_classes']:,} | {r['replicas']} | {r['shard_size']:,} | "
              f"{r['state_bytes_per_replica'] / 2 ** 20:.1f} MiB | {r['step_ms']:.0f} |"
              for r in results]
    _replace_between(SHARDED_START, SHARDED_END, lines)


def run_versus_lightly():
    """keras_ssl's BYOL beside lightly's on both CPU types, alternating (versus_lightly.py)."""
    from experiments import versus_lightly
    overrides = {"fused_batch_norm": True} if FLAGS.fused_batch_norm else None
    lines = versus_lightly.run_and_record(
        FLAGS.data, path=os.path.join(RESULTS, "versus_lightly.json"),
        lightly_python=FLAGS.lightly_python, repeats=FLAGS.repeats, overrides=overrides,
        with_defaults=bool(overrides))
    _replace_between(VERSUS_START, VERSUS_END, lines)


def run_semi_supervised_or_continual():
    """The semi-supervised rows or the continual variants, seeds missing from their results."""
    from experiments import semi_supervised_benchmark as semi
    seeds = [int(seed) for seed in (FLAGS.seeds or [FLAGS.seed])]
    common = dict(data=FLAGS.data, work_dir=FLAGS.work_dir, seeds=seeds, epochs=FLAGS.epochs,
                  write_readme=FLAGS.write_readme)
    if FLAGS.what == "semi_supervised":
        semi.run_semi_supervised(rows=FLAGS.rows or list(semi.ROWS), **common)
    else:
        semi.run_continual(variants=FLAGS.rows or list(semi.CONTINUAL_VARIANTS), **common)


def run_kernels():
    from experiments.kernel_benchmark import measure_kernels
    results = measure_kernels()
    _save(os.path.join(RESULTS, "kernels.json"), results)
    lines = ["| kernel | size | XLA ms | TF (no XLA) ms | NumPy ms | NumPy baseline |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in ("sinkhorn", "kmeans", "topk", "mira", "memory_kmeans"):
        r = results[name]
        lines.append(f"| {name} | {r['size']} | {r['xla_ms']:.1f} | {r['tf_ms']:.1f} "
                     f"| {r['numpy_ms']:.1f} | {r['numpy']} |")
    lines.append(f"\n{results['machine']['note']}.")
    _replace_between(KERNELS_START, KERNELS_END, lines)


def run_speed():
    """Images/s per method; with --baseline_tree, the same in another checkout beside it.

    Each measurement runs in a fresh process; two processes of the same code
    differ by up to ~15% on a shared 2-core machine, so `--repeats` measures
    each method several times and the table gives the median. With a
    baseline the two trees alternate (baseline first on even turns, this
    tree first on odd ones), so a drift of the machine's speed lands on both
    sides alike; without one, the order of the methods is reversed on odd
    repeats for the same reason.
    """
    from experiments.machine import machine
    from experiments.speed_benchmark import commit_of, measure_in_tree, median_of
    path = os.path.join(RESULTS, "speed.json")
    results = _load(path)
    runs = {method: {"new": [], "baseline": []} for method in FLAGS.methods}
    turn = 0
    for repeat in range(FLAGS.repeats):
        for method in (FLAGS.methods if repeat % 2 == 0 else FLAGS.methods[::-1]):
            trees = [ROOT]
            if FLAGS.baseline_tree:
                trees = [FLAGS.baseline_tree, ROOT] if turn % 2 == 0 else [ROOT, FLAGS.baseline_tree]
            turn += 1
            for tree in trees:
                measured = measure_in_tree(tree, method, FLAGS.data, FLAGS.seed)
                if measured:
                    runs[method]["new" if tree == ROOT else "baseline"].append(measured)
            results[method] = median_of(runs[method]["new"])
            if runs[method]["baseline"]:
                results[method]["baseline"] = dict(median_of(runs[method]["baseline"]),
                                                   commit=commit_of(FLAGS.baseline_tree))
            print(json.dumps(results[method]), flush=True)
            results["machine"] = machine()
            _save(path, results)
    _write_speed_table(results)


def _write_speed_table(results):
    from keras_ssl.methods import registry
    methods = sorted(name for name in results if name != "machine")
    baselines = {results[m]["baseline"]["commit"] for m in methods if "baseline" in results[m]}
    before = (f"before ({', '.join(sorted(baselines))}): training / model" if baselines
              else None)
    header = ["method", "runs", "training images/s", "model alone", "pipeline alone",
              "vs its base method", "E-step: seconds (share of an epoch)", *([before, "change: training / model"] if before else []),
              "lightly images/s", "vs lightly"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method in methods:
        r = results[method]
        base = _base_method(registry, method) if method in registry.METHODS else method
        vs_base = (f"{r['train_images_per_s'] / results[base]['train_images_per_s']:.2f}x "
                   f"{base}" if base != method and base in results else "")
        peer = LIGHTLY.get(method, (None, None))[1]
        ratio = f"{r['train_images_per_s'] / peer:.2f}x" if peer else "n/a"
        row = [method, str(r.get("repeats", 1)), f"{r['train_images_per_s']:.0f}",
               f"{r['step_images_per_s']:.0f}",
               f"{r['pipeline_images_per_s']:.0f}", vs_base,
               (f"{r['e_step_seconds']:.1f} s ({r['e_step_share']:.0%})"
                if "e_step_seconds" in r else "")]
        if before:
            old = r.get("baseline")
            row += ([f"{old['train_images_per_s']:.0f} / {old['step_images_per_s']:.0f}",
                     f"{r['train_images_per_s'] / old['train_images_per_s'] - 1:+.0%} / "
                     f"{r['step_images_per_s'] / old['step_images_per_s'] - 1:+.0%}"]
                    if old else ["", ""])
        row += [str(peer or "n/a"), ratio]
        lines.append("| " + " | ".join(row) + " |")
    machine = results.get("machine")
    if machine:
        lines.append(f"\nMeasured on {machine['cpu']}, {machine['cores']} cores "
                     f"({', '.join(machine['extensions']) or 'no AVX2'}); lightly's figures "
                     "come from published-results.md, measured on another machine.")
    _replace_between(SPEED_START, SPEED_END, lines)


def _base_method(registry, method):
    """What `method` builds on: the method it presets, else the one its class extends."""
    base = registry.base_name(method)
    if base != method:
        return base
    parent = registry.method_class(method).__mro__[1]
    return next((name for name, klass in registry.METHODS.items()
                 if klass is parent and name not in registry.PRESETS), method)


def run_floor():
    """kNN of random weights on both protocols' banks, one backbone per seed."""
    from experiments.floor_benchmark import measure_floor
    seeds = [int(seed) for seed in (FLAGS.seeds or [FLAGS.seed])]
    protocols = {"cpu_small": dict(train_per_class=1000, imbalance_ratio=0.0),
                 "cpu_small_longtail": dict(train_per_class=LONGTAIL["train_per_class"],
                                            imbalance_ratio=LONGTAIL["imbalance_ratio"]),
                 # MIRA's backbone starts with zeroed residual branches.
                 "cpu_small, zero_init_residual": dict(train_per_class=1000,
                                                       imbalance_ratio=0.0,
                                                       zero_init_residual=True)}
    results = {}
    for protocol, subset in protocols.items():
        results[protocol] = [measure_floor(FLAGS.data, seed=seed, **subset) for seed in seeds]
        print(json.dumps({protocol: results[protocol]}), flush=True)
    _save(os.path.join(RESULTS, "floor.json"), results)
    lines = ["| protocol | kNN bank | random-weights kNN top-1 (mean ± std) | seeds |",
             "| --- | --- | --- | --- |"]
    for protocol, runs in results.items():
        values, top1 = _top1_over_seeds(runs)
        lines.append(f"| {protocol} | {runs[0]['bank_images']} images | "
                     f"{top1} ({', '.join(f'{t:.1f}' for t in values)}) | {len(runs)} |")
    _replace_between(FLOOR_START, FLOOR_END, lines)


def run_evaluation():
    """evaluate.py --protocol=all on each method's protocol run (run the protocol first)."""
    import subprocess
    path = os.path.join(RESULTS, "evaluation.json")
    results = _load(path)
    for method in FLAGS.methods:
        model_dir = os.path.join(FLAGS.work_dir, f"{method}_seed{FLAGS.seed}")
        plot_dir = os.path.join(PLOTS, f"{method}_cpu_small")
        command = [sys.executable, os.path.join(ROOT, "experiments", "evaluate.py"),
                   f"--checkpoint={model_dir}", f"--data={FLAGS.data}",
                   "--train_per_class=1000", "--protocol=all", "--linear_method=lbfgs",
                   f"--plot={plot_dir}", f"--seed={FLAGS.seed}"]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode:
            raise ValueError(f"evaluate.py failed on {model_dir}: "
                             f"{completed.stderr.strip().splitlines()[-1:]}")
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        for key in ("embedding_plot", "curves_plot"):
            result[key] = os.path.relpath(result[key], ROOT)
        results[method] = result
        print(json.dumps(result), flush=True)
        _save(path, results)
    lines = ["| method | kNN top-1 | linear top-1 / top-5 | 1% labels top-1 "
             "| 10% labels top-1 | k-means NMI / ARI / accuracy |",
             "| --- | --- | --- | --- | --- | --- |"]
    for method in sorted(results):
        r = results[method]
        lines.append(
            f"| {method} | {100 * r['knn_top1']:.1f}% | {100 * r['linear_top1']:.1f}% / "
            f"{100 * r['linear_top5']:.1f}% | {100 * r['semi_1pct_top1']:.1f}% | "
            f"{100 * r['semi_10pct_top1']:.1f}% | {r['nmi']:.3f} / {r['ari']:.3f} / "
            f"{100 * r['cluster_acc']:.1f}% |")
    for method in sorted(results):
        r = results[method]
        lines.append(f"\n![{method}: t-SNE of test features]({r['embedding_plot']}) "
                     f"![{method}: training curves]({r['curves_plot']})")
    _replace_between(EVALUATION_START, EVALUATION_END, lines)


def write_readme_table(results):
    """The protocol table: seed 0's run, and the mean ± std when more seeds ran."""
    lines = ["| method | kNN top-1 | seeds: mean ± std | lightly kNN top-1 "
             "| train seconds | train images/s | lightly images/s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for method in sorted(results):
        runs = results[method]
        r = runs.get("0") or runs[min(runs, key=int)]
        _, top1 = _top1_over_seeds(runs.values())
        spread = f"{top1} ({len(runs)})" if len(runs) > 1 else "one seed"
        peer_acc, peer_speed = LIGHTLY.get(method, (None, None))
        lines.append(
            f"| {method} | {100 * r['knn_top1']:.1f}% | {spread} | "
            f"{'%.1f%%' % (100 * peer_acc) if peer_acc else 'n/a'} | "
            f"{r['train_seconds']:.0f} | {r['train_images_per_s']:.0f} | "
            f"{peer_speed or 'n/a'} |")
    clustering = [(method, seed, run) for method in sorted(results)
                  for seed, run in sorted(results[method].items(), key=lambda item: int(item[0]))
                  if run.get("nmi") is not None]
    if clustering:
        lines += ["", "Deep-clustering runs, their own last E-step labels against the classes "
                  "of the 10,000 training images:", "",
                  "| method | seed | NMI | ARI | cluster accuracy |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {method} | {seed} | {run['nmi']:.3f} | {run['ari']:.3f} | "
                  f"{100 * run['cluster_acc']:.1f}% |" for method, seed, run in clustering]
    _replace_between(START, END, lines)


def _top1_over_seeds(runs):
    """kNN top-1 of several runs in percent, and "mean%" or "mean% ± sample std"."""
    import numpy as np
    top1 = 100 * np.array([run["knn_top1"] for run in runs])
    spread = f" ± {top1.std(ddof=1):.1f}" if len(top1) > 1 else ""
    return top1, f"{top1.mean():.1f}%{spread}"


def _replace_between(start, end, lines):
    from experiments.readme_tables import replace_between
    replace_between(start, end, lines, README)


def _load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _save(path, results):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)


def main(argv):
    del argv
    try:
        if FLAGS.what == "pipeline":
            run_pipeline()
        elif FLAGS.what == "kernels":
            run_kernels()
        elif FLAGS.what == "speed":
            run_speed()
        elif FLAGS.what == "evaluation":
            run_evaluation()
        elif FLAGS.what == "floor":
            run_floor()
        elif FLAGS.what == "versus_lightly":
            run_versus_lightly()
        elif FLAGS.what == "sharded_classifier":
            run_sharded_classifier()
        elif FLAGS.what in ("semi_supervised", "continual"):
            run_semi_supervised_or_continual()
        elif FLAGS.protocol == "cpu_small_longtail":
            run_longtail()
        else:
            run_protocol()
    except (ValueError, FileNotFoundError) as error:
        print(f"benchmark.py: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)

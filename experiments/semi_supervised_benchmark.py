"""The semi-supervised and continual proof runs: `benchmark.py --what=semi_supervised|continual`.

The CPU protocol's data and backbone (10,000 CIFAR-10 training images, the
first 1,000 of each class; ResNet-18 with the CIFAR stem at width 0.25;
the full test split), each method's `cifar10_cpu_small` recipe, and a
shorter schedule, so that the 2 budgets x 6 rows x 3 seeds fit on a 2-core
machine (the `cpu_small` recipes are ~10 minutes a run):

- every semi-supervised run takes 156 optimizer steps of 64 labelled images:
  the FixMatch family with mu = 2 (64 labelled + 128 unlabelled, each a weak
  and a strong view) for 2 epochs of the unlabelled images, the MixMatch
  family with its official 64 + 64 for 1 epoch;
- every EMA decays at 0.98 (a 50-step horizon: 0.98^156 = 4% of the start
  left), as the FixMatch CPU recipe;
- "supervised" is FixMatch with its unlabelled term off (lambda_u = 0): the
  same network, views, steps, weight decay and EMA, learning from the labels
  alone, which is how the FixMatch paper's supervised baseline is trained;
- "fixmatch_from_simclr" starts FixMatch from the encoder of the CPU
  protocol's SimCLR run (`init_encoder`), trained once per benchmark;
- "fixmatch_usl" (40 labels only) trains FixMatch on the 40 images USL picks
  from that SimCLR encoder's features (`experiments/select_labels.py`), against
  FixMatch on random class-balanced picks, one draw per seed;
- HierMatch keeps its official level fractions: of the same labelled images,
  60% keep the fine label, 20% only the middle (WordNet) one and 20% only
  vehicle/animal.

`--what=continual` runs NNCSL's CPU recipe (5 tasks of 2 classes, 5% labels,
2 epochs a task) beside NNCSL without distillation and plain fine-tuning (no
distillation, no replay buffer: each task sees its own labels only).

Every result lands in experiments/results/{semi_supervised,continual}.json
by row, budget and seed, so later calls add seeds, and the README tables are
rewritten from the whole file.
"""

import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results")
SEMI_START, SEMI_END = "<!-- semi_supervised:start -->", "<!-- semi_supervised:end -->"
CONTINUAL_START, CONTINUAL_END = "<!-- continual:start -->", "<!-- continual:end -->"
PRESET = "cifar10_cpu_small"
BUDGETS = (4, 25)  # labels per class: the 40- and 250-label protocols
EMA_DECAY = 0.98
# The schedule of every row: 156 steps of 64 labelled images.
FIXMATCH_SCHEDULE = dict(global_batch_size=128, labeled_batch_size=64, epochs=2)
MIXMATCH_SCHEDULE = dict(global_batch_size=64, labeled_batch_size=64, epochs=1)
# row: (registry method, method keyword changes, view keyword changes, schedule)
ROWS = {
    "supervised": ("fixmatch", dict(unlabeled_weight=0.0), {}, FIXMATCH_SCHEDULE),
    "fixmatch": ("fixmatch", {}, {}, FIXMATCH_SCHEDULE),
    "fixmatch_from_simclr": ("fixmatch", {}, {}, FIXMATCH_SCHEDULE),
    "fixmatch_usl": ("fixmatch", {}, {}, FIXMATCH_SCHEDULE),
    "mixmatch": ("mixmatch", {}, {}, MIXMATCH_SCHEDULE),
    # HierMatch on FixMatch: FixMatch's streams and optimizer, one weak and
    # one strong view, lambda_u 1 and threshold 0.95 (hiermatch.py's note).
    "hiermatch_fixmatch": ("hiermatch", dict(base="fixmatch", unlabeled_weight=1.0),
                           dict(num_weak=1, num_strong=1), FIXMATCH_SCHEDULE),
    "hiermatch_mixmatch": ("hiermatch", {}, {}, MIXMATCH_SCHEDULE),
}
# hiermatch_fixmatch trains on FixMatch's SGD streams, not HierMatch's Adam ones.
STREAMS_OF = {"hiermatch_fixmatch": "fixmatch"}
USL_BUDGET = 4
CONTINUAL_VARIANTS = {
    "nncsl": (dict(), {}),
    "nncsl_no_distillation": (dict(distillation_weight=0.0), {}),
    "fine_tuning": (dict(distillation_weight=0.0), dict(buffer_size=0)),
}


def row_config(row, labels_per_class, seed, *, data, work_dir, epochs=0):
    """(model_dir, `pretrain` keyword arguments) of one run of `row`."""
    from keras_ssl import configs
    method, method_changes, view_changes, schedule = ROWS[row]
    entry = configs.get(PRESET, method)
    flags = dict(entry["flags"])
    streams = configs.get(PRESET, STREAMS_OF[row])["flags"] if row in STREAMS_OF else flags
    for name in ("optimizer", "learning_rate", "weight_decay", "warmup_epochs"):
        flags[name] = streams[name]
    flags.update(schedule, hide_labels=True, labels_per_class=labels_per_class)
    if epochs:
        flags["epochs"] = epochs
    method_kwargs = dict(entry["method"], ema_decay=EMA_DECAY, **method_changes)
    if method == "hiermatch" and method_changes.get("base") == "fixmatch":
        fixmatch = configs.get(PRESET, "fixmatch")["method"]
        method_kwargs.update(threshold=fixmatch["threshold"])
    view_kwargs = dict(entry["views"] or {}, **view_changes)
    model_dir = os.path.join(work_dir, f"{row}_{labels_per_class * 10}labels_seed{seed}")
    if row == "fixmatch_from_simclr":
        flags["init_encoder"] = simclr_dir(work_dir)
    if row == "fixmatch_usl":
        flags.pop("labels_per_class")
        flags["label_indices"] = usl_file(work_dir)
    return model_dir, dict(method=method, data=data, seed=seed, model_dir=model_dir,
                           verbose=2, method_kwargs=method_kwargs, view_kwargs=view_kwargs,
                           **flags)


def simclr_dir(work_dir):
    return os.path.join(work_dir, "simclr_for_semi_supervised")


def usl_file(work_dir):
    return os.path.join(work_dir, f"usl_{USL_BUDGET * 10}.txt")


def train_simclr(data, work_dir, epochs=0):
    """The CPU protocol's SimCLR run (seed 0), once: the start of fixmatch_from_simclr and USL."""
    from keras_ssl import configs
    from keras_ssl.training import pretrain
    entry = configs.get(PRESET, "simclr")
    flags = dict(entry["flags"], **({"epochs": epochs} if epochs else {}))
    return pretrain(method="simclr", data=data, seed=0, model_dir=simclr_dir(work_dir),
                    verbose=2, method_kwargs=entry["method"], view_kwargs=entry["views"],
                    **flags)


def select_with_usl(data, work_dir):
    """USL's 40 picks from the SimCLR encoder, through the binary a user runs."""
    command = [sys.executable, os.path.join(ROOT, "experiments", "select_labels.py"),
               f"--checkpoint={simclr_dir(work_dir)}", f"--data={data}",
               "--train_per_class=1000", f"--budget={USL_BUDGET * 10}",
               f"--output={usl_file(work_dir)}"]
    subprocess.run(command, check=True)
    from keras_ssl.data import read_label_indices
    from keras_ssl.training import load_training_data
    picks = [int(i) for i in read_label_indices(usl_file(work_dir))]
    _, train, _ = load_training_data(data, image_size=32, train_per_class=1000,
                                     imbalance_ratio=0.0)
    classes = [int(train.labels[i]) for i in picks]
    return {"indices": picks, "per_class": [classes.count(c) for c in range(10)]}


def run_semi_supervised(*, data, work_dir, rows, seeds, epochs=0, write_readme=True):
    """Trains each (row, budget, seed) missing from the results file; rewrites the table."""
    from keras_ssl.training import pretrain
    path = os.path.join(RESULTS, "semi_supervised.json")
    needs_simclr = {"fixmatch_from_simclr", "fixmatch_usl"} & set(rows)
    if needs_simclr and not os.path.exists(os.path.join(simclr_dir(work_dir), "config.json")):
        print(json.dumps({"simclr": train_simclr(data, work_dir, epochs)}), flush=True)
    if "fixmatch_usl" in rows and (epochs or not os.path.exists(usl_file(work_dir))
                                   or lookup(load(path), ["usl_picks"]) is None):
        record(path, ["usl_picks"], select_with_usl(data, work_dir), epochs)
    for seed in seeds:
        for row in rows:
            for labels_per_class in (BUDGETS if row != "fixmatch_usl" else (USL_BUDGET,)):
                key = [row, str(labels_per_class * 10), str(seed)]
                if not epochs and lookup(load(path), key) is not None:
                    continue  # measured already: the table adds seeds, never reruns
                model_dir, kwargs = row_config(row, labels_per_class, seed, data=data,
                                               work_dir=work_dir, epochs=epochs)
                if os.path.exists(model_dir):
                    shutil.rmtree(model_dir)  # a fresh run, never a resume
                result = pretrain(**kwargs)
                print(json.dumps({"row": row, **result}), flush=True)
                record(path, key, result, epochs)
    if write_readme and not epochs:
        replace_between(SEMI_START, SEMI_END, semi_supervised_table(load(path)))


def run_continual(*, data, seeds, work_dir, variants, epochs=0, write_readme=True):
    """NNCSL and its two baselines on the CPU recipe, per seed; rewrites the table."""
    from keras_ssl import configs
    from keras_ssl.training import continual_pretrain
    from keras_ssl.configs import nncsl
    path = os.path.join(RESULTS, "continual.json")
    entry = configs.get(PRESET, "nncsl")
    for seed in seeds:
        for variant in variants:
            key = [variant, str(seed)]
            if not epochs and lookup(load(path), key) is not None:
                continue
            method_changes, driver_changes = CONTINUAL_VARIANTS[variant]
            flags = dict(entry["flags"], **({"epochs": epochs} if epochs else {}))
            model_dir = os.path.join(work_dir, f"continual_{variant}_seed{seed}")
            if os.path.exists(model_dir):
                shutil.rmtree(model_dir)
            result = continual_pretrain(
                method="nncsl", data=data, seed=seed, model_dir=model_dir, verbose=2,
                method_kwargs=dict(entry["method"], **method_changes),
                view_kwargs=entry["views"], **flags,
                **dict(nncsl.continual("cpu_small"), **driver_changes))
            print(json.dumps({"variant": variant, **result}), flush=True)
            record(path, key, result, epochs)
    if write_readme and not epochs:
        replace_between(CONTINUAL_START, CONTINUAL_END, continual_table(load(path)))


def semi_supervised_table(results):
    """Rows x budgets: test top-1 of the method's classifier (EMA), mean ± std over seeds."""
    lines = ["| method | 40 labels: test top-1 | seeds | 250 labels: test top-1 | seeds "
             "| kNN top-1 (40 / 250) |", "| --- | --- | --- | --- | --- | --- |"]
    for row in ROWS:
        cells, knn = [], []
        for labels in (str(b * 10) for b in BUDGETS):
            runs = list(results.get(row, {}).get(labels, {}).values())
            cells += [mean_std([run["test_top1"] for run in runs]), str(len(runs))]
            knn.append(mean_std([run["knn_top1"] for run in runs]) if runs else "-")
        if any(cell != "0" for cell in cells[1::2]):
            lines.append(f"| {row} | {' | '.join(cells)} | {' / '.join(knn)} |")
    picks = results.get("usl_picks")
    if picks:
        lines += ["", f"USL's {len(picks['indices'])} picks from the SimCLR encoder's features, "
                  f"per class: {', '.join(map(str, picks['per_class']))} (random picks are "
                  f"{USL_BUDGET} per class)."]
    return lines


def continual_table(results):
    """Variants x tasks: top-1 on the classes seen so far after each task."""
    import numpy as np
    lines = ["| variant | seeds | " + " | ".join(f"after task {t}" for t in range(1, 6)) + " |",
             "| --- | --- |" + " --- |" * 5]
    for variant in CONTINUAL_VARIANTS:
        runs = list(results.get(variant, {}).values())
        if not runs:
            continue
        per_task = np.array([run["task_test_top1"] for run in runs])
        cells = [mean_std(per_task[:, t]) for t in range(per_task.shape[1])]
        lines.append(f"| {variant} | {len(runs)} | {' | '.join(cells)} |")
    return lines


def mean_std(values):
    """Percent "mean" or "mean ± sample std"; "-" for no values."""
    import numpy as np
    if len(values) == 0:
        return "-"
    values = 100 * np.asarray(values, dtype=float)
    spread = f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else ""
    return f"{values.mean():.1f}%{spread}"


def lookup(results, key):
    for part in key:
        if not isinstance(results, dict) or part not in results:
            return None
        results = results[part]
    return results


def record(path, key, value, epochs):
    """Stores `value` under the nested `key` (re-reading the file first); smoke runs store nothing."""
    if epochs:
        return
    results = load(path)
    node = results
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = value
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        json.dump(results, file, indent=2, sort_keys=True)


def load(path):
    if os.path.exists(path):
        with open(path) as file:
            return json.load(file)
    return {}


def replace_between(start, end, lines):
    from experiments.readme_tables import replace_between as replace
    replace(start, end, lines)

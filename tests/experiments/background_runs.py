"""Subprocess runs that tests start early and read late, as futures by name.

A train.py, evaluate.py or export.py process spends most of its time on one
core (importing TensorFlow, decoding images, tracing), so on two cores two of
them take little longer than one. A module's fixture starts every run some
collected test asks for as soon as it can; each test takes `.result()` of its
run's future and makes every assertion about it itself.
"""

import contextlib
from concurrent.futures import ThreadPoolExecutor


class BackgroundRuns:
    """Named jobs in a thread pool, each submitted the first time it is asked for.

    Args:
        executor: the pool.
        jobs: name -> (job, needs): `job(*futures, folder)` runs with the
            futures of the jobs named in `needs` (submitted first, here) and
            `folder_for(name)`.
        folder_for: name -> the job's folder.
    """

    def __init__(self, executor, jobs, folder_for):
        self.executor, self.jobs, self.folder_for = executor, jobs, folder_for
        self.futures = {}

    def start(self, name):
        """The future of job `name`, submitted on the first call."""
        if name not in self.futures:
            job, needs = self.jobs[name]
            futures = [self.start(need) for need in needs]
            self.futures[name] = self.executor.submit(job, *futures, self.folder_for(name))
        return self.futures[name]


@contextlib.contextmanager
def started_runs(request, jobs, folder_for, *, max_workers, module_only=False):
    """Yields `BackgroundRuns` with every job a collected test asks for (by a
    fixture of the job's name) already started, in `jobs`' order; waits for
    all of them on exit.

    `module_only` counts only the tests of the requesting module. Under
    pytest-xdist a worker collects the whole suite, but tests/conftest.py's
    scheduler sends every test of tests/experiments to one worker, so the
    one that makes these fixtures runs every test that asks for them.
    """
    wanted = [name for name in jobs
              if any(name in item.fixturenames
                     and (not module_only or item.path == request.node.path)
                     for item in request.session.items)]
    with ThreadPoolExecutor(max_workers=max_workers) as executor:
        runs = BackgroundRuns(executor, jobs, folder_for)
        for name in wanted:
            runs.start(name)
        yield runs

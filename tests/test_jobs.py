"""The one background-job abstraction (workbench.core.jobs): progress as data, cancel, result, failure, pruning."""

from __future__ import annotations

import threading

from workbench.core.jobs import Cancelled, Job, JobRegistry, Progress


def test_progress_is_data_and_the_result_is_kept() -> None:
    seen = threading.Event()
    go_on = threading.Event()

    def work(job: Job) -> str:
        job.report(1, 4, phase="scoring", message="stretch 1 of 4", detail={"label": "Q4_K_M"})
        seen.set()
        go_on.wait(10)
        return "report"

    job = Job(work, title="t").start()
    assert seen.wait(10)
    snap = job.snapshot()
    assert (snap["done"], snap["total"], snap["fraction"], snap["phase"]) == (1, 4, 0.25, "scoring")
    assert snap["message"] == "stretch 1 of 4" and snap["detail"] == {"label": "Q4_K_M"}
    assert not snap["finished"] and snap["status"] == "running"
    view = {k: v for k, v in snap.items() if k != "elapsed_s"}
    assert view == {k: v for k, v in job.snapshot().items() if k != "elapsed_s"}  # nothing changed: equal
    go_on.set()
    assert job.join(10)
    snap = job.snapshot()
    assert snap["status"] == "done" and job.result == "report" and snap["fraction"] == 1.0 and snap["failure"] is None
    assert Progress(3, 0).fraction == 0.0 and Progress(5, 4).fraction == 1.0


def test_cancel_reaches_the_work_and_ends_the_job_as_cancelled() -> None:
    started = threading.Event()

    def work(job: Job) -> None:
        started.set()
        job.cancel.wait(10)
        raise Cancelled("Stopped; the part already fetched is kept")

    job = Job(work).start()
    assert started.wait(10)
    assert not job.snapshot()["cancelling"]
    job.stop()
    assert job.join(10)
    snap = job.snapshot()
    assert snap["status"] == "cancelled" and snap["cancelled"] and not snap["cancelling"]
    assert snap["message"] == "Stopped; the part already fetched is kept" and snap["failure"] is None


class PathJob(Job):
    expected = (FileNotFoundError,)
    failure_prefix = "Building failed: "


def test_a_user_mistake_is_one_line_and_a_bug_names_its_type(capsys) -> None:
    def missing(job: Job) -> None:
        raise FileNotFoundError("no such file: /x.gguf\nsecond line")

    def bug(job: Job) -> None:
        raise KeyError("oops")

    mistake = PathJob(missing).start()
    mistake.join(10)
    assert mistake.status == "failed" and mistake.failure == "no such file: /x.gguf"
    assert "Traceback" not in capsys.readouterr().err  # a user mistake is no traceback
    broken = PathJob(bug).start()
    broken.join(10)
    assert broken.failure == "Building failed: KeyError: 'oops'"
    assert "Traceback" in capsys.readouterr().err  # a bug is logged with its trace


def test_the_registry_prunes_old_finished_jobs_and_never_a_running_one() -> None:
    reg = JobRegistry(keep_finished=2, keep_for_s=60)
    release = threading.Event()
    running = reg.start(Job(lambda job: release.wait(10)))
    done = [reg.start(Job(lambda job, i=i: i)) for i in range(5)]
    for j in done:
        assert j.join(10)
    for age, j in enumerate(done):  # the first finished longest ago
        j.finished_at = 1000.0 + age
    assert reg.get(done[0].id) is done[0]  # nothing pruned yet
    assert reg.prune(now=1000.0 + 30) == []  # all ended within keep_for_s: kept
    gone = reg.prune(now=1000.0 + 200)
    assert sorted(gone) == sorted(j.id for j in done[:3])  # old and not among the newest two
    assert [reg.get(j.id) for j in done] == [None, None, None, done[3], done[4]]
    assert reg.get(running.id) is running and reg.active() == [running]
    assert reg.get(running.id, PathJob) is None  # asked for another kind of job
    release.set()
    assert running.join(10)
    assert reg.prune(now=running.finished_at + 500) == [done[3].id]  # the newest two stay, however old
    assert len(reg) == 2 and reg.get(running.id) is running

"""The experiments mean what they say: threads per worker fit the server's cores, the server's
and the client's CPU are measured, and a point whose figure measures contention is flagged.

No timing is asserted: the CPU tests make processes burn a set amount of CPU time (not wall
time) and check that the accounting finds it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servegate.entry import cli
from servegate.entry.commands.experiment import register
from servegate.load import experiments, sweep_point, threads
from servegate.load.cpu import CpuMeter, CpuUse, Sample, TreeAccount, use_between
from servegate.load.threads import ProcessThreads, ThreadPlan, plan_threads
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.containers import (
    ContainerSpec,
    docker_create_kwargs,
    stage_repository,
)

# --- the thread plan --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("processes", "cpus", "threads_each", "oversubscribed"),
    [
        (1, 2, 2, False),  # MLServer parallel_workers 0 or 1: one process takes both cores
        (2, 2, 1, False),  # the 2 workers on 2 cores: one thread each
        (4, 2, 1, True),  # more workers than cores: still one thread, and flagged
        (1, 1.5, 1, False),  # a container's fractional CPU limit runs whole threads
        (3, 8, 2, False),
    ],
)
def test_threads_are_fitted_to_the_server_cores(processes, cpus, threads_each, oversubscribed):
    plan = plan_threads(processes, cpus, visible_cores=8)
    assert plan.threads == threads_each
    assert plan.source == "fit"
    assert plan.oversubscribed is oversubscribed
    assert plan.env() == {
        "OMP_NUM_THREADS": str(threads_each),
        "MKL_NUM_THREADS": str(threads_each),
        "OPENBLAS_NUM_THREADS": str(threads_each),
    }


def test_server_default_threads_count_one_per_visible_core():
    """0 leaves torch's default, one thread per core each process sees: 2 workers on a
    2-core machine run 4 threads, as in the run the issue measured."""
    plan = plan_threads(2, 2, visible_cores=2, override=0)
    assert plan.threads is None and plan.env() == {}
    assert plan.effective_threads == 2 and plan.total_threads == 4
    assert plan.oversubscribed
    assert "4 on 2 server core(s)" in plan.describe()


def test_given_threads_are_kept_even_when_they_oversubscribe():
    plan = plan_threads(1, 2, visible_cores=2, override=3)
    assert (plan.threads, plan.source, plan.oversubscribed) == (3, "given", True)


@pytest.mark.parametrize(
    ("processes", "cpus", "override"), [(0, 2, None), (1, 0, None), (1, 2, -1)]
)
def test_impossible_plans_are_refused(processes, cpus, override):
    with pytest.raises(ValueError):
        plan_threads(processes, cpus, visible_cores=2, override=override)


def test_planned_processes_follow_each_server():
    assert threads.planned_processes("mlserver", 0) == 1  # inference in the server itself
    assert threads.planned_processes("mlserver", 3) == 3
    assert threads.planned_processes("kserve", 4) == 1  # kserve 0.14.1 serves in one process


# --- what the server really runs --------------------------------------------------------------


def _proc(
    pid: int, omp: str | None, thread_cpu: tuple[float, ...], computes: bool = True
) -> ProcessThreads:
    return ProcessThreads(pid, "x", omp, len(thread_cpu), thread_cpu, sum(thread_cpu), computes)


def test_busy_threads_are_those_doing_a_real_share_of_their_process():
    # an OpenMP team of two on a starved machine: small slices, still two compute threads
    assert _proc(1, "2", (0.4, 0.35, 0.01, 0.0)).busy_threads == 2
    assert _proc(1, "1", (0.04, 0.0)).busy_threads == 0  # below any measurable work


def test_thread_check_verifies_env_and_busy_threads():
    plan = plan_threads(2, 2, visible_cores=2)
    idle_parent = _proc(1, "1", (0.01, 0.0))
    workers = [_proc(2, "1", (5.0, 0.0, 0.0)), _proc(3, "1", (4.0, 0.5, 0.0))]
    result = threads.check(plan, [idle_parent, *workers])
    assert result.verified, result.detail
    assert (result.working_processes, result.busy_threads) == (2, (1, 1))


def test_thread_check_fails_when_the_env_did_not_reach_a_worker():
    plan = plan_threads(2, 2, visible_cores=2)
    result = threads.check(plan, [_proc(2, "1", (5.0,)), _proc(3, None, (5.0,))])
    assert not result.verified
    assert "OMP_NUM_THREADS is not 1 in process(es) [3]" in result.detail


def test_thread_check_fails_when_a_worker_runs_more_compute_threads_than_planned():
    """The environment says 1 but two threads compute: the runtime ignored it."""
    plan = plan_threads(2, 2, visible_cores=2)
    result = threads.check(plan, [_proc(2, "1", (3.0, 3.0)), _proc(3, "1", (3.0,))])
    assert not result.verified
    assert "busy threads above the plan: pid 2: 2" in result.detail


def test_a_front_end_without_compute_libraries_is_not_held_to_the_plan():
    """MLServer's main process with parallel workers parses requests in several threads; it
    has no torch mapped, so only its environment is checked."""
    plan = plan_threads(2, 2, visible_cores=2)
    front = _proc(1, "1", (1.0, 1.0, 1.0), computes=False)
    result = threads.check(plan, [front, _proc(2, "1", (3.0,)), _proc(3, "1", (3.0,))])
    assert result.verified, result.detail


def test_thread_check_without_work_verifies_nothing():
    result = threads.check(plan_threads(1, 2, visible_cores=2), [_proc(1, "2", (0.0,))])
    assert not result.verified and result.working_processes == 0


SPINNER = """
import sys, threading, time
n = int(sys.argv[1])
spun = threading.Barrier(n + 1)
def spin(seconds):
    while time.thread_time() < seconds:
        pass
    spun.wait()
    time.sleep(60)  # alive, so /proc still lists the thread and its CPU time
for _ in range(n):
    threading.Thread(target=spin, args=(0.3,), daemon=True).start()
spun.wait()
print("done", flush=True)
time.sleep(60)
"""


def _spinner(n: int, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SPINNER, str(n)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "done"
    return proc


def test_threads_and_environment_are_read_back_from_proc():
    """A process with OMP_NUM_THREADS=1 whose two threads each burned 0.3 s of CPU: /proc
    shows the variable and two busy threads."""
    proc = _spinner(2, {"OMP_NUM_THREADS": "1"})
    try:
        (seen,) = threads.compare({}, threads.snapshot(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    assert seen.omp_threads == "1"
    assert seen.busy_threads == 2
    assert not seen.computes  # plain Python: no torch, no OpenMP runtime mapped
    assert threads.check(plan_threads(1, 1, visible_cores=1), [seen]).verified
    result = threads.check(plan_threads(1, 4, visible_cores=4), [seen])
    assert not result.verified and "OMP_NUM_THREADS is not 4" in result.detail


# --- CPU accounting ---------------------------------------------------------------------------


def test_tree_account_keeps_what_exited_processes_used():
    account = TreeAccount()
    assert account.update({1: 1.0, 2: 2.0}) == 3.0
    assert account.update({1: 1.5}) == 3.5  # pid 2 exited: its 2 s stay counted
    assert account.update({1: 1.5, 2: 0.25}) == 3.75  # pid 2 reused by a new process


def test_cpu_use_is_interpolated_between_samples():
    samples = [
        Sample(0.0, 0.0, 0.0, 0.0),
        Sample(1.0, 1.0, 0.5, 2.0),
        Sample(3.0, 3.0, 0.5, 5.0),
    ]
    use = use_between(samples, 0.5, 2.0, cores=2)
    assert use.server_percent == pytest.approx(100.0)  # 0.5 -> 2.0 over 1.5 s
    assert use.client_percent == pytest.approx(100 * 0.25 / 1.5)
    assert use.machine_percent == pytest.approx(100 * (3.5 - 1.0) / 1.5)
    assert use.other_percent == pytest.approx(use.machine_percent - 100 - 100 * 0.25 / 1.5)


def test_unmeasured_server_is_none_not_zero():
    use = use_between([Sample(0, None, 1.0, 1.0), Sample(1, None, 1.5, 2.0)], 0, 1, cores=2)
    assert use.server_percent is None
    assert use.record()["server_cpu_percent"] is None


@pytest.mark.parametrize(
    ("server", "client", "machine", "saturated"),
    [
        (150, 30, 185, True),  # server and load generator take the machine
        (120, 30, 150, False),
        (None, 185, 190, True),  # a server not measured: the machine still tells
        (40, 5, 190, True),  # other processes took the cores: a shared machine
        (170, 20, 150, True),  # samples disagree: the larger share counts
    ],
)
def test_saturation_is_the_machines_busy_share(server, client, machine, saturated):
    use = CpuUse(10.0, server, client, machine_percent=machine, cores=2)
    assert use.saturated is saturated


def test_cpu_meter_finds_the_cpu_a_process_tree_burned():
    """A parent whose child burns 0.3 s of CPU in each of two threads: the meter, watching the
    parent, counts the child's 0.6 s."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1], '2'],"
            " stdout=sys.stdout); p.wait()",
            SPINNER,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with CpuMeter(parent.pid, interval_s=0.05) as meter:
            meter.watch_client(os.getpid())
            assert parent.stdout is not None and parent.stdout.readline().strip() == "done"
            time.sleep(0.1)
        first, last = meter.samples[0], meter.samples[-1]
    finally:
        parent.kill()
        for child in __import__("psutil").Process(os.getpid()).children(recursive=True):
            child.kill()
        parent.wait()
    assert last.server_s is not None and first.server_s is not None
    assert last.server_s - first.server_s >= 0.5
    assert last.client_s is not None and last.client_s > 0
    assert last.machine_s > first.machine_s


# --- validity ---------------------------------------------------------------------------------


def _measure(plan: ThreadPlan | None, server: float, client: float, verified: bool = True):
    check = threads.ThreadCheck(1, (1,), ("1",), verified, "detail of the check")
    return sweep_point.PointMeasure(CpuUse(8.0, server, client, server + client, 2), plan, check)


def test_oversubscribed_point_is_flagged_with_its_plan():
    plan = plan_threads(2, 2, visible_cores=2, override=0)
    (flag,) = _measure(plan, 100, 20).flags()
    assert flag.name == "oversubscribed"
    assert "2 inference process(es) x 2 (default) thread(s) = 4 on 2" in flag.detail


def test_saturated_machine_is_flagged_with_each_share():
    measure = _measure(plan_threads(2, 2, visible_cores=2), 100, 30)
    measure.cpu = CpuUse(8.0, 100, 30, machine_percent=190, cores=2)
    (flag,) = measure.flags()
    assert flag.name == "cpu_saturated"
    assert "server 100 % + load generator 30 % + other processes 60 % of 200 %" in flag.detail


def test_threads_that_did_not_take_effect_are_flagged():
    (flag,) = _measure(plan_threads(1, 2, visible_cores=2), 50, 10, verified=False).flags()
    assert (flag.name, flag.detail) == ("threads_unverified", "detail of the check")


def test_server_default_threads_are_not_held_to_a_plan_they_never_had():
    measure = _measure(plan_threads(1, 2, visible_cores=2, override=0), 50, 10, verified=False)
    assert measure.flags() == []


def test_a_run_cut_short_is_flagged():
    measure = _measure(plan_threads(2, 2, visible_cores=2), 80, 20)
    measure.asked_s, measure.ran_s = 8, 2.5
    (flag,) = measure.flags()
    assert (flag.name, flag.detail) == ("short_run", "ran 2.5 s of the 8 s asked")
    measure.ran_s = 7.9
    assert measure.flags() == []


def test_point_validity_adds_the_experiments_reasons_to_the_load_generators():
    document = {"validity": {"valid": False, "flags": [{"name": "loop_lag", "detail": "late"}]}}
    measure = _measure(plan_threads(4, 2, visible_cores=2), 10, 10)
    valid, names, reasons = sweep_point.point_validity(document, measure)
    assert not valid
    assert names == ["loop_lag", "oversubscribed"]
    assert reasons[0] == "loop_lag: late"


def test_a_clean_point_is_valid():
    document = {"validity": {"valid": True, "flags": []}}
    assert sweep_point.point_validity(
        document, _measure(plan_threads(2, 2, visible_cores=2), 80, 20)
    )[0]


# --- knee and pages ---------------------------------------------------------------------------


def _point(workers: int, rate: float, valid: bool, flags: list[str] = ()) -> dict:
    return {
        "workers": workers,
        "users": 16,
        "requests": 100,
        "error_rate": 0.0,
        "requests_per_s": rate,
        "p50_ms": 10.0,
        "p99_ms": 20.0,
        "valid": valid,
        "validity_flags": list(flags),
        "validity_reasons": [f"{f}: because" for f in flags],
        "threads_per_worker": 1,
        "server_cpu_percent": 150.0,
        "client_cpu_percent": 30.0,
        "server_processes": [{"pid": 1}],
    }


def test_knee_is_taken_over_valid_points_only():
    rows = [_point(1, 100, True), _point(2, 180, True), _point(4, 400, False, ["oversubscribed"])]
    assert experiments.knees(rows, "workers") == (2, 4)


def test_experiment_page_says_what_the_knee_and_each_flag_mean(tmp_path):
    settings = experiments.Settings(loadtests=tmp_path, reports_dir=tmp_path, state_dir=tmp_path)
    points = [_point(1, 100, True), _point(2, 90, False, ["oversubscribed", "cpu_saturated"])]
    doc = experiments._document("workers", "mlserver", points, {"users=16": (1, 1)}, settings)
    assert doc["validity"] == {
        "valid": False,
        "flags": [
            {"name": "oversubscribed", "detail": "points workers=2 users=16"},
            {"name": "cpu_saturated", "detail": "points workers=2 users=16"},
        ],
    }
    assert set(doc["notes"]) == {"cpu", "knee"} | {f"flag {n}" for n in sweep_point.REASONS}
    page = experiments.experiment_markdown(doc)
    assert "What the knee means: the worker count after which" in page
    assert "- workers=2 users=16: oversubscribed: because; cpu_saturated: because" in page
    assert f"- `oversubscribed`: {sweep_point.REASONS['oversubscribed']}" in page
    assert "server_processes" not in page  # detail stays in the JSON
    assert "threads per worker: fit to the cores" in page
    experiments._write(settings, doc, "workers", "users")
    csv_text = (tmp_path / "load-experiment-workers-mlserver.csv").read_text()
    assert "oversubscribed;cpu_saturated" in csv_text and "server_processes" not in csv_text


def test_target_label_is_file_name_safe():
    assert experiments.target_label("http://10.0.0.5:8080/") == "10-0-0-5-8080"
    assert experiments.target_label("https://user@host.example/x") == "user-host-example"


# --- the environment reaches the server ------------------------------------------------------


def test_local_server_runs_with_the_thread_environment(tmp_path, empty_fixtures, python):
    """The spec's environment is the server process's, read back from /proc, and wins over the
    runtime's own."""
    from servegate.reference_servers.local import start_local

    from .conftest import TinyRuntime

    env = plan_threads(2, 2, visible_cores=2).env()
    server = start_local(
        TinyRuntime(),
        ServerSpec(runtime="tiny", ready_timeout=30, env=env),
        empty_fixtures,
        python,
        state_dir=tmp_path / "state",
        logs_dir=tmp_path / "logs",
    )
    try:
        seen = [threads.env_value(server.proc.pid, name) for name in threads.THREAD_ENV_VARS]
        assert experiments.server_pid(server) == server.proc.pid
    finally:
        server.stop()
    assert seen == ["1", "1", "1"]


# --- containers: the CPU limit and the environment --------------------------------------------


def test_container_gets_the_cpu_limit_and_the_thread_environment(tmp_path):
    from tests.test_containers import make_fake_fixtures

    fixtures = make_fake_fixtures(tmp_path / "fixtures")
    spec = ServerSpec(
        runtime="mlserver",
        models=("tiny-text-classification",),
        options={"cpus": "1.5", "parallel_workers": 2},
        env=plan_threads(2, 1.5, visible_cores=2).env(),
    )
    layout = stage_repository("mlserver", spec, fixtures, tmp_path / "repo")
    kwargs = docker_create_kwargs(ContainerSpec(layout, tmp_path / "repo"))
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["environment"]["OMP_NUM_THREADS"] == "1"
    assert kwargs["environment"]["HF_HUB_OFFLINE"] == "1"  # the layout's own env stays


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_container_cpu_limit_must_be_a_positive_number(tmp_path, value):
    from servegate.errors import ServegateError
    from tests.test_containers import make_fake_fixtures

    spec = ServerSpec(runtime="mlserver", options={"cpus": value})
    with pytest.raises(ServegateError, match="cpus="):
        stage_repository("mlserver", spec, make_fake_fixtures(tmp_path / "f"), tmp_path / "r")


def test_container_without_a_limit_has_none(tmp_path):
    from tests.test_containers import make_fake_fixtures

    spec = ServerSpec(runtime="mlserver", models=("tiny-text-classification",))
    layout = stage_repository("mlserver", spec, make_fake_fixtures(tmp_path / "f"), tmp_path / "r")
    assert "nano_cpus" not in docker_create_kwargs(ContainerSpec(layout, tmp_path / "r"))


# --- options ----------------------------------------------------------------------------------


def test_every_experiment_option_has_a_help_line():
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    (exp,) = [
        p for a in parser._actions if isinstance(a, argparse._SubParsersAction)
        for p in a.choices.values()
    ]  # fmt: skip
    missing = [a.dest for a in exp._actions if a.dest != "help" and not a.help]
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["workers", "--host", "http://h:1"], "experiment workers restarts the server"),
        (["quantization", "--host", "http://h:1"], "experiment quantization restarts the server"),
        (["batching", "--host", "h:1"], "--host 'h:1': expected a base URL"),
        (["batching", "--host", "http://h:1", "--backend", "testcontainers"], "--host names a"),
        (["batching", "--host", "http://h:1", "--threads-per-worker", "1"], "set it on your"),
        (["batching", "--host", "http://h:1", "--server-pid", "x"], "--server-pid 'x'"),
        (["batching", "--host", "http://h:1", "--server-pid", "999999999"], "no such process"),
        (["workers", "--server-cpus", "0"], "--server-cpus 0: expected more than 0"),
        (["workers", "--server-cpus", "999"], "at most the"),
        (["workers", "--server-cpus", "two"], "--server-cpus 'two': expected a number"),
        (["workers", "--threads-per-worker", "-1"], "--threads-per-worker '-1': expected 0"),
        (["workers", "--threads-per-worker", "x"], "--threads-per-worker 'x'"),
        (["workers", "--image", "img"], "--image needs --backend testcontainers"),
        (["workers", "--server-pid", "1"], "--server-pid goes with --host"),
        (["workers", "--workers", "1,a"], "--workers '1,a': expected comma-separated"),
        (["workers", "--workers", "-1"], "--workers '-1': every value must be at least 0"),
        (["batching", "--concurrency", "0"], "--concurrency '0': every value must be at least 1"),
        (["batching", "--grid", "8-10"], "--grid '8-10': expected SIZE:TIME_MS"),
        (["workers", "--run-time", "0"], "--run-time 0: expected at least 1 second"),
        (["workers", "--users", "0"], "--users 0: expected at least 1"),
    ],
)
def test_bad_options_give_one_line(argv, message, capsys, tmp_path, monkeypatch):
    # nothing may start: any attempt to run an experiment fails the test
    for name in ("batching", "workers", "quantization", "batching_target"):
        monkeypatch.setattr(experiments, name, lambda *a, **k: pytest.fail("started a run"))
    code = cli.main(["--reports-dir", str(tmp_path), "experiment", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert message in err


# --- against any target -----------------------------------------------------------------------

CALIBRATION = Path(__file__).resolve().parents[1] / "loadtests" / "calibration" / "server.py"


def test_batching_sweeps_client_concurrency_against_a_server_servegate_did_not_start(tmp_path):
    """A short sweep against the calibration server (null V2 endpoint), its pid named: each
    point has the server's and the client's CPU and a verdict; the page says what the knee
    means. No figure is asserted (the machine is shared)."""
    # find_spec, not an import: importing locust would monkey-patch this process
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (the 'load' extra)")
    from servegate.reference_servers.local import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(CALIBRATION), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(port)
        code = cli.main(
            [
                "--reports-dir", str(tmp_path), "experiment", "batching",
                "--host", f"http://127.0.0.1:{port}", "--model", "null", "--task", "",
                "--concurrency", "1,2", "--run-time", "2", "--server-pid", str(server.pid),
            ]
        )  # fmt: skip
    finally:
        server.kill()
        server.wait()
    assert code == 0
    doc = __import__("json").loads(
        (tmp_path / f"load-experiment-batching-127-0-0-1-{port}.json").read_text()
    )
    assert [p["users"] for p in doc["points"]] == [1, 2]
    for p in doc["points"]:
        # Locust's --run-time timer once fired on a stale event-loop clock: 2 s runs lasted
        # 0.1 to 0.7 s and sent nothing
        assert "short_run" not in p["validity_flags"], p["validity_reasons"]
        assert p["requests"] > 0
        assert p["server_cpu_percent"] is not None and p["client_cpu_percent"] is not None
        assert isinstance(p["valid"], bool)
        assert p["server_processes"][0]["pid"] == server.pid
    assert doc["target"]["server_pid"] == server.pid
    assert "concurrency knee is where the server" in doc["notes"]["knee"]
    assert (tmp_path / f"load-experiment-batching-127-0-0-1-{port}.md").is_file()


def _wait(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"calibration server not listening on {port}")


# --- the container backend, for real ----------------------------------------------------------

IMAGE = "servegate/mlserver:cpu"  # `servegate image build mlserver`


def _image_problem() -> str | None:
    from servegate.reference_servers.containers import docker_engine_problem

    problem = docker_engine_problem(timeout=2)
    if problem:
        return problem
    import docker

    client = docker.from_env()
    try:
        client.images.get(IMAGE)
    except Exception:  # noqa: BLE001 - any lookup failure means no image to run
        return f"no image {IMAGE} (servegate image build mlserver)"
    finally:
        client.close()
    return None


@pytest.mark.slow
def test_container_runs_with_its_cpu_limit_and_the_thread_environment(tmp_path, monkeypatch):
    """The running container has the CPU limit Docker enforces, and the server's processes in
    it see the planned threads: read from the engine and from /proc, not from the spec."""
    problem = _image_problem()
    if problem:
        pytest.skip(problem)
    import docker

    from servegate.reference_servers.manager import start_reference

    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # no registry for the reaper
    plan = plan_threads(2, 1, visible_cores=threads.visible_cores())
    server = start_reference(
        "mlserver", state_dir=Path(".servegate").resolve(), logs_dir=tmp_path / "logs",
        backend="testcontainers", ready_timeout=600, models=("tiny-text-classification",),
        options={"image": IMAGE, "cpus": 1, "parallel_workers": 2}, env=plan.env(),
    )  # fmt: skip
    try:
        pid = experiments.server_pid(server)
        assert pid is not None
        container = server._container.get_wrapped_container()  # type: ignore[attr-defined]
        nano_cpus = docker.from_env().api.inspect_container(container.id)["HostConfig"]["NanoCpus"]
        seen = {threads.env_value(p, "OMP_NUM_THREADS") for p in threads.tree_pids(pid)}
        processes = len(threads.tree_pids(pid))
    finally:
        server.stop()
    assert nano_cpus == 1_000_000_000
    assert seen == {"1"}
    assert processes >= 3  # the server and its two workers


def test_kind_pods_get_the_cpu_limit_too():
    from servegate.reference_servers.kind.manifests import resources

    assert resources(False, 1.5)["limits"]["cpu"] == "1.5"
    assert resources(False) == resources(False, None)

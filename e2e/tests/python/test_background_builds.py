"""The scripts' background steps (start_background and wait_background in
e2e/lib/common.sh), which let e2e/test and e2e/stack up run a build beside
another one: a step runs at a lower CPU priority with its output in its own
log, one that fails fails the script with its log's tail, and a script that
stops before it waited stops what it started, children included."""

import os
import pathlib
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[3]


def run_script(body, cache_dir):
    script = f'set -euo pipefail\n. "{ROOT}/e2e/lib/common.sh"\n{body}\n'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MCPK_CACHE_DIR": str(cache_dir)})


def test_a_step_runs_niced_with_its_output_in_its_log(tmp_path):
    done = run_script("step() { echo \"niceness $(nice)\"; }\n"
                      "start_background hello step\nwait_background hello\necho after", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "after\n"
    log = (tmp_path / "build/hello.log").read_text()
    assert log.startswith("niceness ") and log.count("\n") == 1, log
    # renice sets 10 (util-linux 2.38) or adds 10 (later ones): lower either way.
    niceness, own = int(log.split()[1]), os.nice(0)
    assert niceness >= 10 and niceness > min(own, 18), (niceness, own)
    assert "hello: done" in done.stderr


def test_a_failed_step_fails_the_script_with_its_log(tmp_path):
    done = run_script("start_background broken sh -c 'echo the reason; exit 3'\n"
                      "wait_background broken\necho not reached", tmp_path)
    assert done.returncode == 1
    assert "not reached" not in done.stdout
    assert "the reason" in done.stderr
    assert f"broken failed (exit 3); full log: {tmp_path}/build/broken.log" in done.stderr


def test_a_script_that_exits_first_stops_its_steps_and_their_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    done = run_script(f"start_background long sh -c 'sleep 300 & echo $! >{pid_file}; wait'\n"
                      f"while [ ! -s {pid_file} ]; do sleep 0.1; done\ndie 'something else failed'", tmp_path)
    assert done.returncode == 1
    child = int(pid_file.read_text())
    # The group is sent SIGTERM as the script exits; the kernel reaps it soon after.
    for _ in range(100):
        if not pathlib.Path(f"/proc/{child}").exists():
            break
        time.sleep(0.1)
    assert not pathlib.Path(f"/proc/{child}").exists(), "the background step's child outlived the script"

"""A stand-in engine process for the job-runner tests (progress events on stdout, like ``--progress json``).

Modes:
  epochs N DELAY [STATUS_FILE]  N epoch events DELAY s apart, then done (latest event also in STATUS_FILE)
  tree PID_FILE                 starts a child that starts a grandchild; writes "child grandchild" PIDs; sleeps
  child PID_FILE                (used by tree) starts the grandchild and writes both PIDs
  graceful                      runs until the stop file ``./stop`` appears (the job folder is the working
                                directory), then reports a clean stop and exits 0
  stubborn                      ignores the stop file, SIGINT and SIGTERM
  launcher MODE ARGS...         runs ``fake_engine.py MODE ARGS`` as its child and waits for it, forwarding no
                                signal (as Slicer's ``PythonSlicer`` launcher does); exits with the child's code
  fail                          writes to stderr and reports an error, exit status 2
"""

import json
import os
import signal
import subprocess
import sys
import time


def emit(event, status_file=None, **fields):
    record = {"event": event, "time": time.time(), **fields}
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
    if status_file:
        tmp = status_file + ".tmp"
        with open(tmp, "w") as stream:
            json.dump(record, stream)
        os.replace(tmp, status_file)


def epochs(count, delay, status_file=None):
    sys.stdout.write("a line that is not an event\n")
    emit("stage", status_file, stage="train", message="training the fake model")
    for epoch in range(1, count + 1):
        time.sleep(delay)
        emit("epoch", status_file, epoch=epoch, epochs=count, train_loss=1.0 / epoch, val_loss=1.5 / epoch,
             pseudo_dice={"ball": 0.1 * epoch, "box": 0.05 * epoch}, eta_s=(count - epoch) * delay)
    emit("done", status_file, status="finished")


def child(pid_file):
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(pid_file + ".tmp", "w") as stream:
        stream.write(f"{os.getpid()} {grandchild.pid}")
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(120)


def main(mode, *args):
    if mode == "epochs":
        epochs(int(args[0]), float(args[1]), args[2] if len(args) > 2 else None)
    elif mode == "tree":
        subprocess.Popen([sys.executable, __file__, "child", args[0]])
        emit("stage", stage="tree")
        time.sleep(120)
    elif mode == "child":
        child(args[0])
    elif mode == "graceful":
        emit("stage", stage="train")
        while not os.path.exists("stop"):
            time.sleep(0.05)
        emit("done", status="stopped", epoch=3)
        sys.exit(0)
    elif mode == "stubborn":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        emit("stage", stage="train")
        time.sleep(120)
    elif mode == "launcher":
        sys.exit(subprocess.call([sys.executable, __file__, *args]))
    elif mode == "fail":
        sys.stderr.write("Traceback: boom\n")
        emit("error", message="the dataset has no labels")
        sys.exit(2)


if __name__ == "__main__":
    main(*sys.argv[1:])

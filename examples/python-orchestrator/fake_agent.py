"""A stand-in for a remote AI agent: it fails on demand, and it is idempotent.

Like a real agent API that takes an idempotency key, a call with a key that
already ran returns the first answer and runs nothing: an orchestrator that
crashed after calling the agent, but before saving the step, lets its successor
repeat the call with the same key at no cost. A run counts once its answer is
stored (answers/<key>.json, written atomically, also naming the agent, the
call number and the process): a test counts runs there. Every call, run or
answered from a stored answer, is also appended to calls.jsonl (key, agent,
process): a test sees there which orchestrators worked on which step.

Several orchestrator processes share one directory: the call counter and the
answers live there, guarded by file locks.
"""

import fcntl
import json
import os
import time
from contextlib import contextmanager


class AgentError(Exception):
    """The agent failed the task."""


class FakeAgent:
    def __init__(self, name, directory, failing_calls=(), work_s=0.02):
        """`failing_calls`: numbers (from 1, counted over every process) of the calls that fail."""
        self.name = name
        self.directory = directory
        self.failing_calls = set(failing_calls)
        self.work_s = work_s
        os.makedirs(os.path.join(directory, "answers"), exist_ok=True)

    def call(self, key, task):
        """Runs `task` once per `key`; returns (ok, output or error, duration_s) of the first run."""
        answer_path = os.path.join(self.directory, "answers", key.replace("/", "__") + ".json")
        self._log_call(key)
        with _locked(answer_path + ".lock"):
            if os.path.exists(answer_path):
                with open(answer_path, encoding="utf-8") as f:
                    answer = json.load(f)
                return answer["ok"], answer["result"], answer["duration_s"]
            # A process killed from here to the answer's rename leaves no
            # answer: the run never happened, and the key runs when called again.
            number = self._next_call_number()
            started = time.monotonic()
            time.sleep(self.work_s)  # the "work"
            ok = number not in self.failing_calls
            result = {"summary": f"{self.name} did {task}"} if ok else f"{self.name} is failing (call {number})"
            answer = {
                "ok": ok, "result": result, "duration_s": round(time.monotonic() - started, 6),
                "agent": self.name, "key": key, "call": number, "pid": os.getpid(),
            }
            _write_atomically(answer_path, answer)
            return answer["ok"], answer["result"], answer["duration_s"]

    def _log_call(self, key):
        path = os.path.join(self.directory, "calls.jsonl")
        with _locked(path + ".lock"), open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "agent": self.name, "pid": os.getpid(), "time": time.time()}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _next_call_number(self):
        path = os.path.join(self.directory, f"{self.name}.calls")
        with _locked(path + ".lock"):
            number = 1
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    number += json.load(f)
            _write_atomically(path, number)
        return number


@contextmanager
def _locked(path):
    with open(path, "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomically(path, value):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""The warehouse writer lock, across real processes and threads."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from safar.config import SafarHome
from safar.writer_lock import WarehouseBusy, warehouse_writer

HOLDER = """
import sys
from pathlib import Path
from safar.config import SafarHome
from safar.writer_lock import warehouse_writer
with warehouse_writer(SafarHome(Path(sys.argv[1])), purpose="a test holder"):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture
def home(tmp_path: Path) -> SafarHome:
    return SafarHome(tmp_path / "home")


@pytest.fixture
def holder(home: SafarHome) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def _release(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"


def test_a_second_writer_is_told_who_holds_the_warehouse(
    home: SafarHome, holder: subprocess.Popen
) -> None:
    with pytest.raises(WarehouseBusy) as busy:
        with warehouse_writer(home, purpose="mine", wait=False):
            pass
    assert f"pid {holder.pid} (a test holder) since " in str(busy.value)


def test_a_waiting_writer_gets_the_lock_when_the_holder_lets_go(
    home: SafarHome, holder: subprocess.Popen
) -> None:
    order: list[str] = []

    def write() -> None:
        with warehouse_writer(home, purpose="waiter"):
            order.append("waiter wrote")

    waiter = threading.Thread(target=write)
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and order == []  # still waiting behind the holder
    # Noted before the release: once released, the waiter may write at any moment.
    order.append("releasing the holder")
    _release(holder)
    waiter.join(timeout=30)
    assert order == ["releasing the holder", "waiter wrote"]


def test_the_lock_is_free_once_its_holder_dies(home: SafarHome, holder: subprocess.Popen) -> None:
    holder.kill()
    holder.wait()
    with warehouse_writer(home, purpose="after a crash", wait=False):
        pass


def test_one_thread_may_take_it_again_and_other_threads_wait(home: SafarHome) -> None:
    seen: list[str] = []

    def other_thread() -> None:
        try:
            with warehouse_writer(home, purpose="other", wait=False):
                seen.append("other wrote")
        except WarehouseBusy as exc:
            seen.append(str(exc))

    with warehouse_writer(home, purpose="outer"):
        with warehouse_writer(home, purpose="inner", wait=False):
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
        # Still held after the inner block ends: the outer one owns it.
        with pytest.raises(subprocess.CalledProcessError):
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from pathlib import Path; from safar.config import SafarHome;"
                    "from safar.writer_lock import warehouse_writer as w\n"
                    "with w(SafarHome(Path(sys.argv[1])), purpose='x', wait=False): pass",
                    str(home.root),
                ],
                check=True,
                capture_output=True,
            )
    assert len(seen) == 1 and "being written by this process" in seen[0]
    assert "(outer)" in seen[0]
    with warehouse_writer(home, purpose="again", wait=False):
        pass

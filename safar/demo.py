"""``safar demo``: demo data, a built warehouse, Dagster and Streamlit, on embedded defaults.

A second run reuses what exists: data is generated only into an empty landing zone, and the
warehouse is rebuilt only when landing files arrived after the last successful build.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from safar.appdb import open_app_db
from safar.appdb.sources import add_source, list_sources
from safar.build import build
from safar.config import PROJECT_ROOT, SafarHome
from safar.lake import file_id_of, landing_files

DEMO_USERS = 20_000
DEMO_DAYS = 90
DEMO_SEED = 42
DAGSTER_INSTANCE_YAML = PROJECT_ROOT / "dagster_project" / "dagster.yaml"
GATEWAY_PORT = 8080
STREAMLIT_PORT = 8501
DAGSTER_PORT = 3000
SINK_SMTP_PORT = 2525
SINK_HTTP_PORT = 8025


def _built_marker(home: SafarHome) -> Path:
    return home.dbt_target / "built_through"


def ensure_demo_data(
    home: SafarHome, users: int = DEMO_USERS, days: int = DEMO_DAYS, seed: int = DEMO_SEED
) -> bool:
    """Generate the demo shop into an empty landing zone; True if it generated."""
    existing = landing_files(home)
    if existing:
        print(f"reusing {len(existing):,} landing files in {home.raw_events}")
        return False
    from safar.generate import generate

    stats = generate(home, users=users, days=days, seed=seed)
    print(f"generated {stats.events:,} events for {stats.users:,} users")
    return True


def ensure_built(home: SafarHome) -> bool:
    """Build the warehouse unless it already holds every landing file; True if it built."""
    files = landing_files(home)
    newest = file_id_of(files[-1]) if files else ""
    marker = _built_marker(home)
    if home.catalog.exists() and marker.exists() and marker.read_text() == newest:
        print(f"warehouse is up to date ({home.catalog})")
        return False
    result = build(home)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(newest)
    print(f"built the warehouse in {result.seconds:.0f} s ({result.nodes} dbt nodes)")
    return True


def evaluate_demo_segments(home: SafarHome) -> None:
    """Evaluate the segments (the demo ones in segments_sql/) so the Segments pages have sizes.

    Later evaluations are Dagster's (after each ingest batch, and as time passes); this one
    only covers the data the demo generated before Dagster starts.
    """
    from datetime import UTC, datetime

    from safar.segments.evaluate import evaluate_segments
    from safar.segments.registry import load_segments, static_members

    engine = open_app_db(home)
    try:
        now = datetime.now(UTC)
        outcomes = evaluate_segments(
            home,
            load_segments(engine),
            as_of=now,
            batch_id=f"demo:{now.isoformat()}",
            static_members=static_members(engine),
        )
    finally:
        engine.dispose()
    for outcome in outcomes:
        if outcome.status == "failed":
            print(f"segment {outcome.slug} failed: {outcome.reason}")
        elif outcome.status == "evaluated":
            print(f"segment {outcome.slug}: {outcome.size:,} people")


def free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def demo_write_key(home: SafarHome) -> str:
    """The write key the demo's snippets use: the first active source, else a new ``web`` one."""
    engine = open_app_db(home)
    try:
        active = [source for source in list_sources(engine) if source.is_active]
        return active[0].write_key if active else add_source(engine, "web").write_key
    finally:
        engine.dispose()


def point_providers_at_sinks(home: SafarHome, smtp_port: int, http_port: int) -> str | None:
    """Send every channel to the local sinks; the webhook secret, or None when the workspace
    has providers of its own (then the demo sends nothing)."""
    from safar.delivery.demo import configure_demo_providers, demo_providers, demo_webhook_secret

    engine = open_app_db(home)
    try:
        secret = demo_webhook_secret(engine)
        providers = demo_providers(smtp_port, http_port, secret)
        return secret if configure_demo_providers(engine, providers) else None
    finally:
        engine.dispose()


def send_demo_campaign(home: SafarHome, http_port: int, gateway_url: str) -> str:
    """Queue the welcome campaign and send what is due to the local sinks; a summary line."""
    from datetime import UTC, datetime

    from safar.delivery import outbox
    from safar.delivery.demo import demo_deliveries, webhook_url
    from safar.delivery.run import dispatch

    engine = open_app_db(home)
    try:
        now = datetime.now(UTC).replace(tzinfo=None)
        queued = outbox.enqueue(engine, demo_deliveries(home, webhook_url(http_port), now), now)
        total = dispatch(home, until_idle=True, budget_seconds=120, gateway_url=gateway_url)
        counts = outbox.counts(engine)
    finally:
        engine.dispose()
    states = ", ".join(f"{state} {n:,}" for state, n in sorted(counts.items()))
    return f"queued {len(queued):,} new, sent {total.outcomes.get('sent', 0):,}; outbox: {states}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def gateway_command(home: SafarHome, port: int) -> list[str]:
    """The command line of a gateway for ``home`` on loopback ``port``."""
    return [
        sys.executable,
        "-m",
        "safar.cli",
        "--home",
        str(home.root),
        "gateway",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def serve(home: SafarHome) -> int:
    """Start the gateway, Dagster and Streamlit on loopback, print where, run until interrupted."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "SAFAR_HOME": str(home.root)}
    env.setdefault("DAGSTER_HOME", str(home.root / "dagster"))
    # Without Safar's dagster.yaml the warehouse pool has no limit and runs could write at once.
    # It is copied as a file, not through dagster_project, because safar never imports it.
    instance_yaml = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DAGSTER_INSTANCE_YAML, instance_yaml)
    st_port, dg_port = free_port(STREAMLIT_PORT), free_port(DAGSTER_PORT)
    gw_port = free_port(GATEWAY_PORT)
    smtp_port, http_port = free_port(SINK_SMTP_PORT), free_port(SINK_HTTP_PORT)
    sink_secret = point_providers_at_sinks(home, smtp_port, http_port)
    write_key = demo_write_key(home)
    # The Install page prints snippets for this gateway unless the operator named a public URL.
    env.setdefault("SAFAR_GATEWAY_URL", f"http://127.0.0.1:{gw_port}")
    log_dir = home.root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = {
        "sinks": [
            sys.executable,
            "-m",
            "safar.cli",
            "--home",
            str(home.root),
            "delivery",
            "sinks",
            "--smtp-port",
            str(smtp_port),
            "--http-port",
            str(http_port),
        ],
        "gateway": gateway_command(home, gw_port),
        "streamlit": [
            str(bin_dir / "streamlit"),
            "run",
            str(PROJECT_ROOT / "dashboards" / "streamlit_app.py"),
            "--server.address=127.0.0.1",
            f"--server.port={st_port}",
            "--server.headless=true",
            "--browser.gatherUsageStats=false",
        ],
        "dagster": [
            str(bin_dir / "dagster"),
            "dev",
            "-m",
            "dagster_project.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(dg_port),
        ],
    }
    procs: dict[str, subprocess.Popen] = {}
    # SIGTERM (a service manager, a test) and SIGHUP stop the servers as cleanly as Ctrl-C does.
    # SIGINT is set too: a shell starts background jobs with it ignored, and Python keeps that.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        for name, cmd in commands.items():
            if name == "sinks" and sink_secret is None:
                continue
            out = open(log_dir / f"{name}.log", "ab")  # stays open as long as the server runs
            server_env = (
                {**env, "SAFAR_SINK_WEBHOOK_SECRET": sink_secret or ""} if name == "sinks" else env
            )
            procs[name] = subprocess.Popen(
                cmd, cwd=PROJECT_ROOT, env=server_env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for_http(f"http://127.0.0.1:{gw_port}/health", procs["gateway"])
        if sink_secret is None:
            print("Delivery: the workspace has its own providers; the demo sends nothing.")
        else:
            wait_for_http(f"http://127.0.0.1:{http_port}/health", procs["sinks"])
            sent = send_demo_campaign(home, http_port, env["SAFAR_GATEWAY_URL"])
            print(
                f"Delivery (demo):      {sent}; local sinks "
                f"smtp://127.0.0.1:{smtp_port} and http://127.0.0.1:{http_port}",
                flush=True,
            )
        wait_for_http(f"http://127.0.0.1:{st_port}/_stcore/health", procs["streamlit"])
        wait_for_http(f"http://127.0.0.1:{dg_port}/server_info", procs["dagster"], timeout=300)
        print(f"Streamlit (Overview): http://127.0.0.1:{st_port}", flush=True)
        print(f"Dagster:              http://127.0.0.1:{dg_port}", flush=True)
        print(
            f"Gateway (events):     http://127.0.0.1:{gw_port} (write key {write_key}; "
            "snippets on Settings → Install)",
            flush=True,
        )
        print(f"Logs: {log_dir}. Press Ctrl-C to stop.", flush=True)
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        dead = [n for n, p in procs.items() if p.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited (see {log_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_demo(
    home: SafarHome,
    *,
    users: int = DEMO_USERS,
    days: int = DEMO_DAYS,
    seed: int = DEMO_SEED,
    serve_apps: bool = True,
) -> int:
    home.ensure()
    ensure_demo_data(home, users=users, days=days, seed=seed)
    if ensure_built(home):
        # New data: evaluate the segments, then build once more so their Segment Entered
        # events are in the warehouse too. From then on Dagster evaluates (batches, clock).
        evaluate_demo_segments(home)
        ensure_built(home)
    return serve(home) if serve_apps else 0

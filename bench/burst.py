"""Push to signed under a burst: how long after its push each image's ``.sig`` appears.

Run: /work/venv2/bin/python -m bench.burst [--images 200] [--clients 4] [--workers 2]

Real processes, on loopback only:

- PostgreSQL (``--postgres``): a fresh database ``bench_burst_<pid>``, migrated, dropped at
  the end;
- Signet as production serves it: ``scripts/serve`` (gunicorn, config/gunicorn.py) with
  ``--web-workers`` processes of ``--web-threads`` threads, ``SIGNING_DISPATCH=celery``;
- ``--workers`` Celery worker processes (``celery -A config worker --concurrency 1``) on
  Redis (``--redis``), consuming a queue of this run's own;
- a docker-registry (storage on /dev/shm) whose notifications go to Signet's webhook with
  the instance's webhook token; ``--repositories`` namespaces, each with a signing policy.

Then ``--clients`` threads push ``--images`` distinct images at once (two small blobs each,
then the manifest by tag), and a poller lists each repository's tags until every image's
``sha256-<hex>.sig`` tag is there (or ``--timeout`` seconds after the last push).

Per image it reports:
  push -> event        the manifest PUT was sent -> Signet recorded the push (the pending
                       signature row's ``created_at``, written by the webhook);
  event -> .sig        Signet recorded the push -> the ``.sig`` tag was seen in the registry;
  push -> .sig         the manifest PUT was sent -> the ``.sig`` tag was seen.
with p50/p95/p99/max, how many images had no ``.sig`` within 10 s and within 60 s of their
push, the webhook's own time per delivery (gunicorn's access log) and the setup: worker
counts, CPUs and the load average before and after (the machine may be shared).
Targets: p99 of event -> .sig under 1 s; no image later than 10 s after its push.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

from bench.support import create_database, drop_database

SIGNED_WITHIN = (10.0, 60.0)
TARGET_EVENT_TO_SIG_P99 = 1.0
TARGET_PUSH_TO_SIG_MAX = 10.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.burst",
        description=(
            "Push N distinct images from several clients to a real registry that notifies "
            "Signet (gunicorn + PostgreSQL + Celery workers on Redis) and time each push "
            "to the appearance of its cosign .sig tag."
        ),
        epilog="Everything runs on loopback; see the module docstring for what is measured.",
    )
    parser.add_argument("--images", type=int, default=200, help="images to push (200)")
    parser.add_argument("--clients", type=int, default=4, help="pushing threads (4)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (2)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (2)")
    parser.add_argument(
        "--web-threads", type=int, default=4, help="threads per gunicorn worker (4)"
    )
    parser.add_argument(
        "--repositories", type=int, default=4, help="namespaces/repositories pushed into (4)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds after the last push to wait for missing .sig tags (60)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.05,
        help="seconds between two rounds of tag listings while waiting for .sig tags (0.05);"
        " each round lists every repository's tags once",
    )
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database name (a fresh database is made there)",
    )
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="Redis URL of the Celery broker"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the work directory (process logs)"
    )
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None

if ARGS is not None:
    _DATABASE_URL, _DATABASE_NAME = create_database(ARGS.postgres, "bench_burst")
    os.environ["DATABASE_URL"] = _DATABASE_URL

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from kms import services as kms_services  # noqa: E402
from kms.models import AuthorizedService  # noqa: E402
from registry import services as registry_services  # noqa: E402
from registry.client import RegistryClient  # noqa: E402
from registry.models import Instance  # noqa: E402
from signing import services as signing_services  # noqa: E402
from signing.models import Signature  # noqa: E402
from tests.support.celery_worker import Broker, CeleryWorker  # noqa: E402
from tests.support.gunicorn import Gunicorn, start_gunicorn  # noqa: E402
from tests.support.oci import BuiltImage, build_image  # noqa: E402
from tests.support.registry_server import RegistryServer  # noqa: E402

# --- the processes ---------------------------------------------------------------------------


@dataclass
class Setup:
    workdir: Path
    broker: Broker
    instance: Instance | None = None
    gunicorn: Gunicorn | None = None
    registry: RegistryServer | None = None
    workers: list[CeleryWorker] = field(default_factory=list)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.registry is not None:
            self.registry.stop()
            shutil.rmtree(self.registry.workdir, ignore_errors=True)
        if self.gunicorn is not None:
            self.gunicorn.stop()
        with self.broker.client() as client:
            # The queue, and the bindings kombu keeps for it.
            queue = self.broker.queue
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def start(args: argparse.Namespace, setup: Setup) -> None:
    """Migrate, start the workers, gunicorn and the registry; key, instance, policies."""
    call_command("migrate", verbosity=0)
    instance, token = registry_services.create_instance(
        name="burst", backend_url="http://127.0.0.1:9", default_domain="registry.burst.test"
    )
    setup.instance = instance
    for n in range(args.workers):
        log = setup.workdir / f"celery-worker-{n}.log"
        worker = CeleryWorker(
            setup.broker,
            log,
            DJANGO_SETTINGS_MODULE="config.settings",
            SIGNET_ENV_FILE="/nonexistent",
            SIGNING_DISPATCH="celery",
        )
        setup.workers.append(worker)
    setup.gunicorn = start_gunicorn(
        setup.workdir,
        SIGNET_WEB_WORKERS=str(args.web_workers),
        SIGNET_WEB_THREADS=str(args.web_threads),
        SIGNING_DISPATCH="celery",
        CELERY_BROKER_URL=setup.broker.url,
        CELERY_TASK_DEFAULT_QUEUE=setup.broker.queue,
    )
    registry = RegistryServer(
        workdir=tempfile.mkdtemp(prefix="registry-", dir=_scratch()),
        notify_url=setup.gunicorn.url + registry_services.webhook_path(instance=instance),
        notify_token=token,
    )
    setup.registry = registry.start()
    setup.instance = registry_services.update_instance(instance=instance, backend_url=registry.url)
    _policies(setup.instance, args.repositories)
    for worker in setup.workers:
        worker.wait_until_ready()


def _scratch() -> str | None:
    """/dev/shm when writable (signing writes many small files), else the default."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _policies(instance: Instance, count: int) -> None:
    key = kms_services.create_key(alias="burst-signer")
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    for n in range(count):
        namespace = registry_services.create_namespace(instance=instance, name=f"burst{n}")
        signing_services.create_policy(namespace=namespace, name=f"burst-policy-{n}", key=key)


# --- the burst ---------------------------------------------------------------------------------


@dataclass
class Pushed:
    repository: str
    digest: str
    sent: float  # time.time() when the manifest PUT was sent
    done: float  # ... and when the registry answered


def _images(count: int, repositories: int) -> list[tuple[str, BuiltImage]]:
    return [
        (f"burst{n % repositories}/app", build_image(seed=f"burst-{os.getpid()}-{n}"))
        for n in range(count)
    ]


def push_burst(url: str, images: list[tuple[str, BuiltImage]], clients: int) -> list[Pushed]:
    """Each client thread pushes its share (blobs, then the manifest by tag), all at once."""
    barrier = threading.Barrier(clients)
    results: list[list[Pushed]] = [[] for _ in range(clients)]

    def client_thread(n: int) -> None:
        client = RegistryClient(url)
        barrier.wait()
        for number in range(n, len(images), clients):
            repository, image = images[number]
            client.upload_blob(repository, image.config, check_exists=False)
            client.upload_blob(repository, image.layer, check_exists=False)
            sent = time.time()
            digest = client.put_manifest(
                repository, f"t{number:05d}", image.manifest, image.media_type
            )
            results[n].append(Pushed(repository, digest, sent, time.time()))
        client.close()

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [pushed for part in results for pushed in part]


class SigPoller:
    """Lists each repository's tags over and over; the first time each ``.sig`` is seen."""

    def __init__(self, url: str, repositories: list[str], interval: float) -> None:
        self.url = url
        self.interval = interval
        self.repositories = repositories
        self.seen: dict[str, float] = {}
        self.expected: set[str] | None = None
        self.deadline = float("inf")
        self._session = requests.Session()
        self._session.trust_env = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _done(self) -> bool:
        if time.time() > self.deadline:
            return True
        return self.expected is not None and self.expected <= self.seen.keys()

    def _run(self) -> None:
        while not self._done():
            for repository in self.repositories:
                self._poll(repository)
            time.sleep(self.interval)

    def _poll(self, repository: str) -> None:
        response = self._session.get(f"{self.url}/v2/{repository}/tags/list", timeout=10)
        now = time.time()
        if response.status_code != 200:
            return
        for tag in response.json().get("tags") or []:
            if tag.startswith("sha256-") and tag.endswith(".sig"):
                self.seen.setdefault("sha256:" + tag[len("sha256-") : -len(".sig")], now)

    def wait(self, expected: set[str], deadline: float) -> dict[str, float]:
        self.expected, self.deadline = expected, deadline
        self._thread.join()
        self._session.close()
        return self.seen


# --- figures -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (p99 of 200 values: the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 100))
    return ordered[int(rank) - 1]


def _row(name: str, values: list[float], total: int) -> str:
    if not values:
        return f"| {name} | 0/{total} | - | - | - | - |"
    cells = [percentile(values, p) for p in (50, 95, 99)] + [max(values)]
    return f"| {name} | {len(values)}/{total} | " + " | ".join(f"{v:.2f}" for v in cells) + " |"


def recorded_at(digests: list[str]) -> dict[str, float]:
    """When Signet's webhook recorded each push: its pending signature row was created."""
    rows = Signature.objects.filter(manifest__digest__in=digests).values_list(
        "manifest__digest", "created_at"
    )
    return {digest: created.timestamp() for digest, created in rows}


_ACCESS = re.compile(r'"POST \S+/events/ \S+" (\d{3}) \S+ (\d+)ms')


def webhook_times(log: str) -> tuple[list[int], list[str]]:
    """Milliseconds per webhook delivery (gunicorn's access log) and the non-200 statuses."""
    times, errors = [], []
    for match in _ACCESS.finditer(log):
        times.append(int(match.group(2)))
        if match.group(1) != "200":
            errors.append(match.group(1))
    return times, errors


def report(pushed: list[Pushed], seen: dict[str, float], events: dict[str, float]) -> bool:
    """Print the table; True when both targets are met."""
    total = len(pushed)
    to_event = [events[p.digest] - p.sent for p in pushed if p.digest in events]
    both = seen.keys() & events.keys()
    event_to_sig = [seen[p.digest] - events[p.digest] for p in pushed if p.digest in both]
    push_to_sig = [seen[p.digest] - p.sent for p in pushed if p.digest in seen]
    print("| interval (seconds) | images | p50 | p95 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print(_row("push -> event recorded by Signet", to_event, total))
    print(_row("event recorded -> .sig in the registry", event_to_sig, total))
    print(_row("push -> .sig in the registry", push_to_sig, total))
    for bound in SIGNED_WITHIN:
        late = total - sum(1 for value in push_to_sig if value <= bound)
        print(f"no .sig within {bound:.0f} s of the push: {late}")
    p99_met = bool(event_to_sig) and percentile(event_to_sig, 99) < TARGET_EVENT_TO_SIG_P99
    max_met = len(push_to_sig) == total and max(push_to_sig) <= TARGET_PUSH_TO_SIG_MAX
    print(f"target p99 event -> .sig < {TARGET_EVENT_TO_SIG_P99:.0f} s: {_verdict(p99_met)}")
    limit = f"{TARGET_PUSH_TO_SIG_MAX:.0f} s"
    print(f"target every image signed <= {limit} after its push: {_verdict(max_met)}")
    return p99_met and max_met


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def _loadavg() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def print_setup(args: argparse.Namespace, setup: Setup) -> None:
    assert setup.gunicorn is not None and setup.registry is not None
    print(
        f"setup: {args.images} images from {args.clients} client threads into "
        f"{args.repositories} repositories; {args.workers} Celery worker process(es) "
        f"(concurrency 1 each, SIGNING_DISPATCH=celery, Redis {setup.broker.url}); gunicorn "
        f"{args.web_workers} worker(s) x {args.web_threads} thread(s) at {setup.gunicorn.url}; "
        f"PostgreSQL database {_DATABASE_NAME}; registry {setup.registry.url}; "
        f"{os.cpu_count()} CPU(s)"
    )
    print(f"load average before the burst: {_loadavg()}", flush=True)


def print_webhook(setup: Setup) -> None:
    assert setup.gunicorn is not None
    times, errors = webhook_times(setup.gunicorn.log_text())
    if not times:
        print("webhook: no delivery in gunicorn's access log")
        return
    print(
        f"webhook: {len(times)} deliveries (pushes and Signet's own .sig pushes), "
        f"{statistics.median(times):.0f} ms median, {percentile(times, 95):.0f} ms p95, "
        f"{max(times)} ms max, {sum(times) / 1000:.1f} s in all; non-200: {errors or 'none'}"
    )


_TASK_DONE = re.compile(r"Task signing\.tasks\.sign_signatures\[\S+\] succeeded in ([0-9.]+)s")


def print_workers(setup: Setup) -> None:
    """Each worker's sign_signatures tasks and their run time (from its log)."""
    seconds = [
        float(match.group(1))
        for worker in setup.workers
        for match in _TASK_DONE.finditer(worker.log())
    ]
    if seconds:
        print(
            f"Celery sign tasks: {len(seconds)}, {statistics.median(seconds) * 1000:.0f} ms median,"
            f" {percentile(seconds, 95) * 1000:.0f} ms p95, {max(seconds) * 1000:.0f} ms max, "
            f"{sum(seconds):.1f} s in all over {len(setup.workers)} worker(s)"
        )


def run(args: argparse.Namespace, setup: Setup) -> bool:
    start(args, setup)
    assert setup.registry is not None
    print_setup(args, setup)
    images = _images(args.images, args.repositories)
    repositories = sorted({repository for repository, _ in images})
    poller = SigPoller(setup.registry.url, repositories, args.poll_interval)
    began = time.time()
    pushed = push_burst(setup.registry.url, images, args.clients)
    last = max(p.done for p in pushed)
    print(f"pushed {len(pushed)} images in {last - began:.1f} s", flush=True)
    seen = poller.wait({p.digest for p in pushed}, last + args.timeout)
    print(f"all .sig seen {max(seen.values(), default=began) - began:.1f} s after the first push")
    met = report(pushed, seen, recorded_at([p.digest for p in pushed]))
    print_webhook(setup)
    print_workers(setup)
    print(f"load average after the burst: {_loadavg()}")
    return met


def main() -> None:
    assert ARGS is not None
    workdir = Path(tempfile.mkdtemp(prefix="signet-bench-burst-"))
    broker = Broker(ARGS.redis.rstrip("/"), f"signet-bench-burst-{uuid.uuid4().hex}")
    setup = Setup(workdir, broker)
    try:
        run(ARGS, setup)
    finally:
        setup.stop()
        connections.close_all()
        drop_database(ARGS.postgres, _DATABASE_NAME)
        if ARGS.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

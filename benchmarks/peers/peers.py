#!/usr/bin/env python3
"""Mito against its peers, in one run, on one line-protocol file, queried as TSBS queries.

    python3 benchmarks/peers/peers.py --out mito-peers [--workload cpu|iot] [--hosts 4000]
                                      [--hours 3] [--peers influx,vm,duckdb] [--runs 50]
                                      [--seed 1] [--repeat] [--mito PATH] [--mito-config FILE]

1. `mito bench` generates the file (OUT/mito/cpu.lp: TSBS cpu-only; with --workload iot,
   OUT/mito/iot.lp: --hosts trucks in the model of TSBS's IoT use case, with sparse and late
   rows) and measures itself in-process (its figures are kept in OUT/mito/report.json and
   quoted apart).
2. The queries are drawn as TSBS draws them: for each query type, --runs + 2 draws (seeded
   by --seed), each with its own random host(s) and window (see DRAWS), the same draws for
   every engine. `--repeat` instead repeats `mito bench`'s fixed parameters: a profiling
   mode, which measures the caches of one repeated query.
3. `mito server` first, then each peer (InfluxDB 1.x and VictoriaMetrics from Debian's
   packages, DuckDB from PyPI, installed if missing): started on 127.0.0.1 with a fresh data
   directory under OUT, loaded with the same file over HTTP (5000 lines per POST, 2
   writers), settled (flushed, compacted), measured (rows/s, bytes on disk, peak RSS after
   the load and after the queries), queried (every draw in its own language; the first 2
   untimed; median, p90 and the first run), and stopped by its PID. A server this script
   started is stopped even when the run fails or is interrupted.
4. Every peer's answer to every draw is compared with Mito server's (timestamps exactly,
   floats to 1e-6); the report (OUT/peers.md, OUT/peers.json) gives each figure as a ratio
   to Mito server's from this run.

Exit status: 0 when every compared answer matches, 1 when one differs or a step fails.
Only the standard library is needed, plus `duckdb` (installed from PyPI when missing).
"""

import argparse
import csv
import datetime
import http.client
import importlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

ADDR = "127.0.0.1"
T0 = 1451606400  # 2016-01-01T00:00:00Z, the start of the generated data
FIELDS = ["usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
          "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice"]
QUERIES = ["single-groupby-1-1-1", "single-groupby-1-8-1", "single-groupby-5-1-12",
           "cpu-max-all-1", "cpu-max-all-8", "double-groupby-1", "high-cpu-1",
           "groupby-orderby-limit", "lastpoint"]
DUCKDB_VERSION = "2.0.0"
WARMUPS = 2


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the questions


class Params:
    """One draw of a query's parameters: its host(s) and its window. Every builder reads
    `one`/`eight` and the window fields its query uses (`hour_ago`..`end` for the 1-hour
    queries, `start`..`end` for the longer ones, `five_min_ago`..`end` for
    groupby-orderby-limit)."""

    def __init__(self, hosts, hours, one=1, eight=None, lo=None, hi=None):
        self.hosts = hosts
        self.start = T0
        self.end = T0 + hours * 3600
        self.hour_ago = max(T0, self.end - 3600)
        self.five_min_ago = max(T0, self.end - 300)
        self.one = f"host_{one % hosts}"
        self.eight = [f"host_{h % hosts}" for h in (eight or [i * 7 + 3 for i in range(8)])]
        if lo is not None:
            self.start, self.hour_ago, self.five_min_ago, self.end = lo, lo, lo, hi


# Each query type's hosts and window as TSBS draws them (hosts, window seconds, the bucket
# its window starts on): 1 or 8 random hosts, a random window of TSBS's width clipped to the
# data. Windows start on a whole bucket so that every engine's buckets are the same ones
# (VictoriaMetrics' steps count from the window's start, SQL's and InfluxQL's from the
# epoch). groupby-orderby-limit's random end closes 5 minutes (its LIMIT 5); lastpoint has
# no parameters.
DRAWS = {
    "single-groupby-1-1-1": (1, 3600, 60),
    "single-groupby-1-8-1": (8, 3600, 60),
    "single-groupby-5-1-12": (1, 12 * 3600, 60),
    "cpu-max-all-1": (1, 8 * 3600, 3600),
    "cpu-max-all-8": (8, 8 * 3600, 3600),
    "double-groupby-1": (0, 12 * 3600, 3600),
    "high-cpu-1": (1, 12 * 3600, 60),
    "groupby-orderby-limit": (0, 300, 60),
    "lastpoint": (0, 0, 1),
}


# The IoT workload (`mito bench --workload iot`, crates/tsbs/src/iot.rs): its query types and
# their draws (a random fleet and a window of the width, starting on a whole bucket).
FLEETS = ["East", "West", "North", "South", "Central"]
IOT_QUERIES = ["last-loc", "low-fuel", "stationary-trucks", "avg-fuel-fleet"]
IOT_DRAWS = {
    "last-loc": (True, 0, 1),
    "low-fuel": (True, 3600, 60),
    "stationary-trucks": (True, 600, 60),
    "avg-fuel-fleet": (False, 12 * 3600, 3600),
}


class IotParams:
    """One draw of an IoT query: its fleet and window (the whole data when it has none)."""

    workload = "iot"

    def __init__(self, hours, fleet, lo=None, hi=None):
        self.fleet = fleet
        self.hours = hours
        self.start = T0 if lo is None else lo
        self.end = T0 + hours * 3600 if hi is None else hi


def iot_draws(seed, hours, n, repeat=False):
    """For each IoT query type, `n` IotParams drawn from `seed`; with `repeat`, fleet East
    and the last window of each width."""
    import random
    rng = random.Random(seed)
    span = hours * 3600
    out = {}
    for q in IOT_QUERIES:
        has_fleet, width, align = IOT_DRAWS[q]
        w = min(width, span)
        out[q] = []
        for _ in range(n):
            if repeat:
                lo = T0 + span - w
            else:
                lo = T0 + rng.randrange(0, span - w + 1, align) if w else T0
            fleet = FLEETS[0] if repeat or not has_fleet else rng.choice(FLEETS)
            out[q].append(IotParams(hours, fleet, lo if w else None, lo + w if w else None))
    return out


def iot_canonical_csv(q, rows):
    """A CSV answer of Mito's SQL to IoT query `q` (header first) as canonical tuples."""
    body = rows[1:]
    if q == "avg-fuel-fleet":
        return sorted((epoch_of(r[0]), r[1], float(r[2])) for r in body)
    return sorted((r[0], *(float(v) for v in r[1:])) for r in body)


def iot_sql(p, window, hour):
    """The IoT queries in SQL over the draw `p`, with `window` its time condition and `hour`
    the select item of its hour bucket (each engine's dialect)."""
    return {
        "last-loc": "SELECT DISTINCT ON (name) name, latitude, longitude FROM readings "
                    f"WHERE fleet = '{p.fleet}' AND latitude IS NOT NULL ORDER BY name, time DESC",
        "low-fuel": "SELECT name, min(fuel_state) AS fuel FROM diagnostics "
                    f"WHERE fleet = '{p.fleet}' AND {window} GROUP BY name "
                    "HAVING min(fuel_state) < 0.1 ORDER BY name",
        "stationary-trucks": "SELECT name, avg(velocity) AS velocity FROM readings "
                             f"WHERE fleet = '{p.fleet}' AND {window} GROUP BY name "
                             "HAVING avg(velocity) < 1 ORDER BY name",
        "avg-fuel-fleet": f"SELECT {hour}, fleet, avg(fuel_state) FROM diagnostics "
                          f"WHERE {window} GROUP BY hour, fleet ORDER BY hour, fleet",
    }


def iot_mito_sql(p):
    """The IoT queries in Mito's SQL: `mito bench --workload iot`'s texts
    (crates/cli/src/bench.rs) over the draw `p`."""
    def ts(sec):
        return "'" + datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S") + "'"

    return iot_sql(p, f"time >= {ts(p.start)} AND time < {ts(p.end)}",
                   "date_bin(INTERVAL '1 hour', time) AS hour")


def iot_influxql(p):
    """The IoT queries in InfluxQL; identifiers quoted (`name` and `diagnostics` are among
    its keywords)."""
    rng = f"time >= {p.start}s AND time < {p.end}s"
    fleet = f"\"fleet\" = '{p.fleet}'"
    return {
        "last-loc": 'SELECT last("latitude"), last("longitude") FROM "readings" '
                    f'WHERE {fleet} GROUP BY "name"',
        "low-fuel": 'SELECT "m" FROM (SELECT min("fuel_state") AS "m" FROM "diagnostics" '
                    f'WHERE {fleet} AND {rng} GROUP BY "name") WHERE "m" < 0.1 GROUP BY "name"',
        "stationary-trucks": 'SELECT "v" FROM (SELECT mean("velocity") AS "v" FROM "readings" '
                             f'WHERE {fleet} AND {rng} GROUP BY "name") WHERE "v" < 1 '
                             'GROUP BY "name"',
        "avg-fuel-fleet": f'SELECT mean("fuel_state") FROM "diagnostics" WHERE {rng} '
                          'GROUP BY time(1h), "fleet" fill(none)',
    }


def iot_influx_answer(name, body):
    doc = json.loads(body)
    result = doc["results"][0]
    if "error" in result:
        raise RuntimeError(result["error"])
    rows = []
    for s in result.get("series", []):
        tags = s.get("tags") or {}
        for v in s["values"]:
            if name == "avg-fuel-fleet":
                rows.append((v[0], tags["fleet"], float(v[1])))
            else:
                rows.append((tags["name"], *(float(x) for x in v[1:])))
    return sorted(rows)


def iot_metricsql(p, eps):
    """(path, arguments) of each IoT query for VictoriaMetrics: instant queries evaluated
    just before the window's end ((t - w, t] = [start, end) on 10 s data), the fleet
    average as a range query of 1-hour steps (sums over counts: the average of the rows,
    not of the trucks' averages)."""
    fleet = f'fleet="{p.fleet}"'
    at = f"{p.end - eps:.3f}"
    whole = p.hours * 3600 + 600

    def last(field):
        return (f'label_set(last_over_time(readings_{field}{{{fleet}}}[{whole}s]), '
                f'"field", "{field}")')

    return {
        "last-loc": ("/api/v1/query", {"query": f"union({last('latitude')}, {last('longitude')})",
                                       "time": at, "nocache": "1"}),
        "low-fuel": ("/api/v1/query", {
            "query": f"min_over_time(diagnostics_fuel_state{{{fleet}}}[{p.end - p.start}s]) < 0.1",
            "time": at, "nocache": "1"}),
        "stationary-trucks": ("/api/v1/query", {
            "query": f"avg_over_time(readings_velocity{{{fleet}}}[{p.end - p.start}s]) < 1",
            "time": at, "nocache": "1"}),
        "avg-fuel-fleet": ("/api/v1/query_range", {
            "query": "sum by (fleet) (sum_over_time(diagnostics_fuel_state[1h])) / "
                     "sum by (fleet) (count_over_time(diagnostics_fuel_state[1h]))",
            "start": f"{p.start + 3600 - eps:.3f}", "end": f"{p.end - eps:.3f}",
            "step": "3600", "nocache": "1"}),
    }


def iot_vm_answer(name, body, eps):
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise RuntimeError(doc.get("error", "query failed"))
    result = doc["data"]["result"]
    if name == "last-loc":
        trucks = {}
        for s in result:
            trucks.setdefault(s["metric"]["name"], {})[s["metric"]["field"]] = float(s["value"][1])
        return sorted((t, v.get("latitude"), v.get("longitude")) for t, v in trucks.items())
    if name == "avg-fuel-fleet":
        return sorted((int(round(float(t) + eps)) - 3600, s["metric"]["fleet"], float(v))
                      for s in result for t, v in s["values"])
    return sorted((s["metric"]["name"], float(s["value"][1])) for s in result)


def iot_duck_sql(p):
    """The IoT queries in DuckDB's dialect (its timestamps, date_trunc)."""
    return iot_sql(p, f"time >= TIMESTAMP '{utc_text(p.start)}' "
                      f"AND time < TIMESTAMP '{utc_text(p.end)}'",
                   "date_trunc('hour', time) AS hour")


def iot_duck_answer(name, rows):
    if name == "avg-fuel-fleet":
        return sorted((int(round(r[0].replace(tzinfo=datetime.timezone.utc).timestamp())), r[1],
                       float(r[2])) for r in rows)
    return sorted((r[0], *(float(x) for x in r[1:])) for r in rows)


IOT_TAGS = ["name", "fleet", "driver", "model", "device_version"]
IOT_FIELDS = {
    "readings": [("latitude", "DOUBLE"), ("longitude", "DOUBLE"), ("elevation", "BIGINT"),
                 ("fuel_consumption", "DOUBLE"), ("velocity", "DOUBLE")],
    "diagnostics": [("fuel_state", "DOUBLE"), ("current_load", "BIGINT"),
                    ("status", "VARCHAR"), ("ignition", "BOOLEAN")],
}


def iot_lp_to_csv(lp_path, root):
    """The generated IoT line protocol as one CSV per measurement (missing fields empty);
    returns {measurement: csv path}."""
    paths = {m: os.path.join(root, f"{m}.csv") for m in IOT_FIELDS}
    files = {m: open(path, "w", newline="") for m, path in paths.items()}
    try:
        writers = {m: csv.writer(f) for m, f in files.items()}
        for m, w in writers.items():
            w.writerow(IOT_TAGS + ["time"] + [f for f, _ in IOT_FIELDS[m]])
        seconds = {}
        with open(lp_path) as src:
            for line in src:
                series, fields, stamp = line.rstrip("\n").split(" ")
                parts = series.split(",")
                m, tags = parts[0], dict(kv.split("=", 1) for kv in parts[1:])
                values = {}
                for kv in fields.split(","):
                    k, v = kv.split("=", 1)
                    if v.startswith('"'):
                        v = v[1:-1]
                    elif v.endswith("i"):
                        v = v[:-1]
                    elif v in ("t", "f"):
                        v = "true" if v == "t" else "false"
                    values[k] = v
                sec = int(stamp) // 1_000_000_000
                text = seconds.get(sec)
                if text is None:
                    text = seconds[sec] = utc_text(sec)
                writers[m].writerow([tags[t] for t in IOT_TAGS] + [text] +
                                    [values.get(f, "") for f, _ in IOT_FIELDS[m]])
    finally:
        for f in files.values():
            f.close()
    return paths


def draws(seed, hosts, hours, n, repeat=False):
    """For each query type, `n` Params drawn from `seed` (the same for every engine); with
    `repeat`, `n` copies of the fixed parameters of `mito bench` (for profiling one query:
    it measures the caches of a repeated query, not what TSBS measures)."""
    import random
    rng = random.Random(seed)
    span = hours * 3600
    out = {}
    for q in QUERIES:
        if repeat:
            out[q] = [Params(hosts, hours)] * n
            continue
        k, width, align = DRAWS[q]
        out[q] = []
        for _ in range(n):
            w = min(width, span)
            lo = T0 + rng.randrange(0, span - w + 1, align) if w else T0
            picked = rng.sample(range(hosts), min(max(k, 1), hosts))
            out[q].append(Params(hosts, hours, one=picked[0], eight=picked[:8] if k == 8 else None,
                                 lo=lo if w else None, hi=lo + w if w else None))
    return out


def approx_equal(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) <= 1e-6 * max(
            1.0, abs(float(a)), abs(float(b)))
    return a == b


def compare(expected, got):
    """None when equal, else a short description of the first difference."""
    if len(expected) != len(got):
        return f"{len(got)} rows, Mito {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        if len(e) != len(g) or not all(approx_equal(x, y) for x, y in zip(e, g)):
            return f"row {i}: {g}, Mito {e}"
    return None


def epoch_of(text):
    """Seconds since the epoch of a timestamp printed by Arrow's CSV writer (UTC)."""
    text = text.strip().rstrip("Z")
    dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(round(dt.timestamp()))


def canonical_csv(q, rows):
    """A CSV answer of Mito's SQL (header first) as the canonical tuples of query `q`."""
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    if q == "high-cpu-1":
        return [(epoch_of(r[col["time"]]), float(r[col["usage_user"]])) for r in body]
    if q == "lastpoint":
        return sorted((r[col["hostname"]], *(float(r[col[f]]) for f in FIELDS)) for r in body)
    if q == "double-groupby-1":
        return sorted((epoch_of(r[0]), r[1], float(r[2])) for r in body)
    return [(epoch_of(r[0]), *(float(v) for v in r[1:])) for r in body]


def maxes(fields):
    """`max(f1), max(f2), ...`: the select list InfluxQL and SQL share."""
    return ", ".join(f"max({f})" for f in fields)


def utc_text(seconds):
    """`YYYY-MM-DD HH:MM:SS` of a UTC epoch second (DuckDB's literals and CSV times)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")


def percentile(values, q):
    """The q-quantile (0..1) of `values`, nearest rank (the ceil(q n)-th smallest), as
    `mito bench` takes it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# ------------------------------------------------------------------ processes and HTTP


def peak_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def dir_bytes(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


def settle(path, quiet_s, limit_s):
    """Waits until the bytes under `path` stop changing for quiet_s (at most limit_s)."""
    last, since, began = dir_bytes(path), time.time(), time.time()
    while time.time() - began < limit_s:
        time.sleep(1.0)
        now = dir_bytes(path)
        if now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet_s:
            break
    return last


class Http:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, timeout=600):
        conn = http.client.HTTPConnection(ADDR, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body,
                         headers={"Content-Type": "text/plain; charset=utf-8"} if body else {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def wait_ready(self, path, proc, limit_s=60):
        began = time.time()
        while time.time() - began < limit_s:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}")
            try:
                status, _ = self.request("GET", path, timeout=2)
                if status in (200, 204):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"no answer on 127.0.0.1:{self.port}{path} within {limit_s} s")


def batches(path, lines_per_batch):
    """Byte ranges of `lines_per_batch` lines each (the file is read once, page-cached after)."""
    ranges, start, pos, n = [], 0, 0, 0
    with open(path, "rb") as f:
        for line in f:
            pos += len(line)
            n += 1
            if n == lines_per_batch:
                ranges.append((start, pos))
                start, n = pos, 0
    if pos > start:
        ranges.append((start, pos))
    return ranges


def post_all(http_, path, write_path, ranges, writers):
    """POSTs every batch from `writers` threads; returns seconds from the first to the last ack."""
    lock, nxt, errors = threading.Lock(), [0], []

    def worker():
        fd = os.open(path, os.O_RDONLY)
        conn = http.client.HTTPConnection(ADDR, http_.port, timeout=600)
        try:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(ranges) or errors:
                    return
                lo, hi = ranges[i]
                body = os.pread(fd, hi - lo, lo)
                conn.request("POST", write_path, body=body,
                             headers={"Content-Type": "text/plain; charset=utf-8"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status not in (200, 204):
                    errors.append(f"batch {i}: HTTP {resp.status}: {data[:200]!r}")
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{e}")
        finally:
            conn.close()
            os.close(fd)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"load failed: {errors[0]}")
    return time.perf_counter() - began


def apt_install(binary, package):
    if shutil.which(binary):
        return
    log(f"installing {package} from Debian's packages")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(sudo + ["apt-get", "install", "-y", "--no-install-recommends", package],
                      env=env).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update"], env=env, check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "--no-install-recommends", package],
                       env=env, check=True)


def deb_version(package):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                       capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


class Server:
    """A server process this script started; stop() is idempotent and waits for the exit."""

    running = []

    def __init__(self, argv, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        Server.running.append(self)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self in Server.running:
            Server.running.remove(self)

    @classmethod
    def stop_all(cls):
        for s in list(cls.running):
            s.stop()


# ------------------------------------------------------------------ InfluxDB 1.x

INFLUX_CONF = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "2s"
  compact-full-write-cold-duration = "5s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""


class Influx:
    name = "InfluxDB"

    def __init__(self, root, port=18086):
        self.root, self.http = root, Http(port)

    def start(self):
        apt_install("influxd", "influxdb")
        self.version = deb_version("influxdb")
        os.makedirs(self.root)
        conf = os.path.join(self.root, "influxdb.conf")
        with open(conf, "w") as f:
            port = self.http.port
            f.write(INFLUX_CONF.format(root=self.root, port=port, rpc=port + 2))
        self.server = Server(["influxd", "run", "-config", conf],
                             os.path.join(self.root, "influxd.log"))
        self.http.wait_ready("/ping", self.server.proc)
        self.sql("CREATE DATABASE bench", method="POST")

    def load(self, path, ranges):
        return post_all(self.http, path, "/write?db=bench&precision=ns", ranges, writers=2)

    def settle(self):
        return settle(self.root, quiet_s=10, limit_s=300)

    def sql(self, q, method="GET"):
        qs = urllib.parse.urlencode({"db": "bench", "q": q, "epoch": "s"})
        status, body = self.http.request(method, "/query?" + qs)
        if status != 200:
            raise RuntimeError(f"InfluxQL {q!r}: HTTP {status}: {body[:300]!r}")
        return body

    def queries(self, p):
        if getattr(p, "workload", "cpu") == "iot":
            return {name: (text, (lambda t=text: self.sql(t)),
                           (lambda b, n=name: iot_influx_answer(n, b)))
                    for name, text in iot_influxql(p).items()}

        def ors(hosts):
            return "(" + " OR ".join(f"hostname = '{h}'" for h in hosts) + ")"

        rng = f"time >= {p.start}s AND time < {p.end}s"
        last_hour = f"time >= {p.hour_ago}s AND time < {p.end}s"
        qs = {
            "single-groupby-1-1-1": f"SELECT max(usage_user) FROM cpu WHERE hostname = '{p.one}' "
                                    f"AND {last_hour} GROUP BY time(1m) fill(none)",
            "single-groupby-1-8-1": f"SELECT max(usage_user) FROM cpu WHERE {ors(p.eight)} "
                                    f"AND {last_hour} GROUP BY time(1m) fill(none)",
            "single-groupby-5-1-12": f"SELECT {maxes(FIELDS[:5])} FROM cpu "
                                     f"WHERE hostname = '{p.one}' AND {rng} "
                                     "GROUP BY time(1m) fill(none)",
            "cpu-max-all-1": f"SELECT {maxes(FIELDS)} FROM cpu WHERE hostname = '{p.one}' "
                             f"AND {rng} GROUP BY time(1h) fill(none)",
            "cpu-max-all-8": f"SELECT {maxes(FIELDS)} FROM cpu WHERE {ors(p.eight)} "
                             f"AND {rng} GROUP BY time(1h) fill(none)",
            "double-groupby-1": f"SELECT mean(usage_user) FROM cpu WHERE {rng} "
                                "GROUP BY time(1h), hostname fill(none)",
            "high-cpu-1": f"SELECT * FROM cpu WHERE hostname = '{p.one}' AND usage_user > 90.0 "
                          f"AND {rng}",
            "groupby-orderby-limit": "SELECT max(usage_user) FROM cpu "
                                     f"WHERE time >= {p.five_min_ago}s AND time < {p.end}s "
                                     "GROUP BY time(1m) fill(none) ORDER BY time DESC LIMIT 5",
            "lastpoint": "SELECT * FROM cpu GROUP BY hostname ORDER BY time DESC LIMIT 1",
        }
        return {name: (text, (lambda t=text: self.sql(t)), (lambda b, n=name: self.answer(n, b)))
                for name, text in qs.items()}

    @staticmethod
    def answer(name, body):
        doc = json.loads(body)
        result = doc["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        series = result.get("series", [])
        rows = []
        for s in series:
            cols = s["columns"]
            tags = s.get("tags") or {}
            for v in s["values"]:
                rec = dict(zip(cols, v))
                if name == "high-cpu-1":
                    rows.append((rec["time"], float(rec["usage_user"])))
                elif name == "lastpoint":
                    rows.append((tags["hostname"], *(float(rec[f]) for f in FIELDS)))
                elif name == "double-groupby-1":
                    rows.append((rec["time"], tags["hostname"], float(rec["mean"])))
                else:
                    rows.append((v[0], *(float(x) for x in v[1:])))
        if name in ("lastpoint", "double-groupby-1"):
            rows.sort()
        return rows

    def stop(self):
        self.server.stop()


# ------------------------------------------------------------------ Mito as a server


class MitoServer:
    """`mito server` measured exactly as the other servers: the same HTTP line-protocol load
    (5000 lines per POST, 2 writers), its SQL over HTTP (`/v1/sql?format=csv`) timed as
    client wall time. The queries are `mito bench`'s SQL texts."""

    name = "Mito server"

    def __init__(self, root, binary, config=None):
        self.root, self.binary, self.config = root, binary, config
        self.http = Http(0)

    def _start_server(self):
        extra = ["--config", self.config] if self.config else []
        self.server = Server([self.binary, "--data-dir", os.path.join(self.root, "data"),
                              "server", "--http", f"{ADDR}:0", "--no-pg", *extra],
                             os.path.join(self.root, f"server-{len(Server.running)}.log"))
        began = time.time()
        while time.time() - began < 120:
            with open(self.server.log.name) as f:
                for line in f:
                    if "listening on http://" in line:
                        self.http.port = int(line.rsplit(":", 1)[1])
                        self.http.wait_ready("/health", self.server.proc)
                        return
            if self.server.proc.poll() is not None:
                raise RuntimeError(f"mito server exited with {self.server.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError("mito server did not say where it listens within 120 s")

    def start(self):
        self.version = subprocess.run([self.binary, "--version"], capture_output=True,
                                      text=True).stdout.strip()
        os.makedirs(self.root)
        self._start_server()

    def load(self, path, ranges):
        return post_all(self.http, path, "/write?precision=ns", ranges, writers=2)

    def settle(self):
        # A clean stop flushes every table (as the other servers' own flush); the bytes are
        # the whole data directory then. The restarted server answers the queries.
        self.server.stop()
        total = dir_bytes(os.path.join(self.root, "data"))
        self._start_server()
        return total

    def queries(self, p):
        def run(text):
            qs = urllib.parse.urlencode({"sql": text, "format": "csv"})
            status, body = self.http.request("GET", "/v1/sql?" + qs)
            if status != 200:
                raise RuntimeError(f"SQL {text!r}: HTTP {status}: {body[:300]!r}")
            return body

        if getattr(p, "workload", "cpu") == "iot":
            return {name: (text, (lambda t=text: run(t)),
                           (lambda b, n=name: iot_canonical_csv(
                               n, list(csv.reader(b.decode().splitlines())))))
                    for name, text in iot_mito_sql(p).items()}
        return {name: (text, (lambda t=text: run(t)),
                       (lambda b, n=name: canonical_csv(
                           n, list(csv.reader(b.decode().splitlines())))))
                for name, text in mito_sql(p).items()}

    def stop(self):
        self.server.stop()


def mito_sql(p):
    """The nine queries in Mito's SQL over the draw `p`: `mito bench`'s texts
    (crates/cli/src/bench.rs) with the draw's hosts and window."""
    def ts(sec):
        return "'" + datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S") + "'"

    eight = ", ".join(f"'{h}'" for h in p.eight)
    one = f"'{p.one}'"
    rng = f"time >= {ts(p.start)} AND time < {ts(p.end)}"
    last_hour = f"time >= {ts(p.hour_ago)} AND time < {ts(p.end)}"
    minute = "date_bin(INTERVAL '1 minute', time) AS minute"
    hour = "date_bin(INTERVAL '1 hour', time) AS hour"
    return {
        "single-groupby-1-1-1": f"SELECT {minute}, max(usage_user) FROM cpu WHERE hostname = {one} "
                                f"AND {last_hour} GROUP BY minute ORDER BY minute",
        "single-groupby-1-8-1": f"SELECT {minute}, max(usage_user) FROM cpu WHERE hostname IN "
                                f"({eight}) AND {last_hour} GROUP BY minute ORDER BY minute",
        "single-groupby-5-1-12": f"SELECT {minute}, {maxes(FIELDS[:5])} FROM cpu WHERE hostname = "
                                 f"{one} AND {rng} GROUP BY minute ORDER BY minute",
        "cpu-max-all-1": f"SELECT {hour}, {maxes(FIELDS)} FROM cpu WHERE hostname = {one} "
                         f"AND {rng} GROUP BY hour ORDER BY hour",
        "cpu-max-all-8": f"SELECT {hour}, {maxes(FIELDS)} FROM cpu WHERE hostname IN ({eight}) "
                         f"AND {rng} GROUP BY hour ORDER BY hour",
        "double-groupby-1": f"SELECT {hour}, hostname, avg(usage_user) FROM cpu WHERE {rng} "
                            "GROUP BY hour, hostname ORDER BY hour, hostname",
        "high-cpu-1": f"SELECT * FROM cpu WHERE hostname = {one} AND usage_user > 90.0 AND {rng} "
                      "ORDER BY time",
        "groupby-orderby-limit": f"SELECT {minute}, max(usage_user) FROM cpu WHERE "
                                 f"time < {ts(p.end)} AND time >= {ts(p.five_min_ago)} "
                                 "GROUP BY minute ORDER BY minute DESC LIMIT 5",
        "lastpoint": "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC",
    }


# ------------------------------------------------------------------ VictoriaMetrics


class Vm:
    name = "VictoriaMetrics"
    EPS = 0.001  # evaluate each bucket just before its end: (t - w, t] = [start, start + w)

    def __init__(self, root, port=18428):
        self.root, self.http = root, Http(port)

    def start(self):
        apt_install("victoria-metrics", "victoria-metrics")
        self.version = deb_version("victoria-metrics")
        os.makedirs(self.root)
        self.server = Server(["victoria-metrics", f"-storageDataPath={self.root}/data",
                              f"-httpListenAddr={ADDR}:{self.http.port}",
                              "-retentionPeriod=100y", "-loggerLevel=ERROR"],
                             os.path.join(self.root, "vm.log"))
        self.http.wait_ready("/health", self.server.proc)

    def load(self, path, ranges):
        return post_all(self.http, path, "/write", ranges, writers=2)

    def settle(self):
        self.http.request("GET", "/internal/force_flush")
        # One part per partition, as after a long quiet time: VictoriaMetrics' smallest form.
        self.http.request("GET", "/internal/force_merge?partition_prefix=2016_01", timeout=900)
        return settle(self.root, quiet_s=10, limit_s=300)

    def get(self, path, args):
        status, body = self.http.request("GET", path + "?" + urllib.parse.urlencode(args))
        if status != 200:
            raise RuntimeError(f"MetricsQL {args.get('query')!r}: HTTP {status}: {body[:300]!r}")
        return body

    def queries(self, p):
        if getattr(p, "workload", "cpu") == "iot":
            return {name: (args["query"], (lambda pa=path, a=args: self.get(pa, a)),
                           (lambda b, n=name: iot_vm_answer(n, b, self.EPS)))
                    for name, (path, args) in iot_metricsql(p, self.EPS).items()}

        def sel(hosts):
            if len(hosts) == 1:
                return f'hostname="{hosts[0]}"'
            return 'hostname=~"' + "|".join(hosts) + '"'

        def per_field(fields, hosts, window, combine):
            # One series per field, labelled with it, in one request.
            parts = []
            for f in fields:
                inner = f"max_over_time(cpu_{f}{{{sel(hosts)}}}[{window}])"
                parts.append(f'label_set({combine}({inner}), "field", "{f}")')
            return "union(" + ", ".join(parts) + ")"

        def rng(query, lo, hi, step):
            return {"query": query, "start": f"{lo + step - self.EPS:.3f}",
                    "end": f"{hi - self.EPS:.3f}", "step": str(step), "nocache": "1"}

        qs = {
            "single-groupby-1-1-1": rng(f"max_over_time(cpu_usage_user{{{sel([p.one])}}}[1m])",
                                        p.hour_ago, p.end, 60),
            "single-groupby-1-8-1": rng(f"max(max_over_time(cpu_usage_user{{{sel(p.eight)}}}[1m]))",
                                        p.hour_ago, p.end, 60),
            "single-groupby-5-1-12": rng(per_field(FIELDS[:5], [p.one], "1m", "max"),
                                         p.start, p.end, 60),
            "cpu-max-all-1": rng(per_field(FIELDS, [p.one], "1h", "max"), p.start, p.end, 3600),
            "cpu-max-all-8": rng(per_field(FIELDS, p.eight, "1h", "max"), p.start, p.end, 3600),
            "double-groupby-1": rng("avg_over_time(cpu_usage_user[1h])", p.start, p.end, 3600),
            # The rows themselves: each 10 s step lands on a sample; only usage_user is
            # compared (MetricsQL filters one series, not a whole row).
            "high-cpu-1": {"query": f"cpu_usage_user{{{sel([p.one])}}} > 90", "start": str(p.start),
                           "end": str(p.end - 10), "step": "10", "nocache": "1"},
            "groupby-orderby-limit": rng("max(max_over_time(cpu_usage_user[1m]))",
                                         p.five_min_ago, p.end, 60),
            "lastpoint": {"query": '{__name__=~"cpu_usage_.*"}', "time": f"{p.end - self.EPS:.3f}",
                          "nocache": "1"},
        }
        out = {}
        for name, args in qs.items():
            path = "/api/v1/query" if name == "lastpoint" else "/api/v1/query_range"
            out[name] = (args["query"], (lambda pa=path, a=args: self.get(pa, a)),
                         (lambda b, n=name, a=args: self.answer(n, b, a)))
        return out

    def answer(self, name, body, args):
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise RuntimeError(doc.get("error", "query failed"))
        result = doc["data"]["result"]
        step = int(args.get("step", "0") or 0)

        def bucket(t):
            return int(round(float(t) + self.EPS)) - step

        if name == "lastpoint":
            hosts = {}
            for s in result:
                field = s["metric"]["__name__"][len("cpu_"):]
                hosts.setdefault(s["metric"]["hostname"], {})[field] = float(s["value"][1])
            return sorted((h, *(v.get(f) for f in FIELDS)) for h, v in hosts.items())
        if name == "high-cpu-1":
            return sorted((int(round(float(t))), float(v)) for s in result for t, v in s["values"])
        if name == "double-groupby-1":
            return sorted((bucket(t), s["metric"]["hostname"], float(v))
                          for s in result for t, v in s["values"])
        if name in ("single-groupby-5-1-12", "cpu-max-all-1", "cpu-max-all-8"):
            fields = FIELDS[:5] if name == "single-groupby-5-1-12" else FIELDS
            by_time = {}
            for s in result:
                for t, v in s["values"]:
                    by_time.setdefault(bucket(t), {})[s["metric"]["field"]] = float(v)
            return [(t, *(by_time[t].get(f) for f in fields)) for t in sorted(by_time)]
        rows = sorted((bucket(t), float(v)) for s in result for t, v in s["values"])
        if name == "groupby-orderby-limit":
            rows = sorted(rows, reverse=True)[:5]
        return rows

    def stop(self):
        self.server.stop()


# ------------------------------------------------------------------ DuckDB


class Duck:
    name = "DuckDB"

    def __init__(self, root, workload="cpu"):
        self.root, self.workload = root, workload

    def start(self):
        try:
            import duckdb  # noqa: F401
        except ImportError:
            log(f"installing duckdb=={DUCKDB_VERSION} from PyPI")
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                            f"duckdb=={DUCKDB_VERSION}"], check=True)
            importlib.invalidate_caches()
        import duckdb
        self.version = duckdb.__version__
        os.makedirs(self.root)
        self.db_path = os.path.join(self.root, "cpu.duckdb")
        self.con = duckdb.connect(self.db_path)

    def load(self, path, _ranges):
        """Converts the line protocol to CSV (not timed), then times DuckDB's bulk load of it:
        in-process and bulk, so not the same kind of figure as the servers' HTTP ingest."""
        if self.workload == "iot":
            return self.load_iot(path)
        csv_path = os.path.join(self.root, "cpu.csv")
        tags = lp_to_csv(path, csv_path)
        types = [(t, "VARCHAR") for t in tags] + [("time", "TIMESTAMP")] + \
            [(f, "DOUBLE") for f in FIELDS]
        self.con.execute("CREATE TABLE cpu (" + ", ".join(f"{c} {t}" for c, t in types) + ")")
        columns = "{" + ", ".join(f"'{c}': '{t}'" for c, t in types) + "}"
        began = time.perf_counter()
        self.con.execute(f"INSERT INTO cpu SELECT * FROM read_csv('{csv_path}', header = true, "
                         f"columns = {columns}, timestampformat = '%Y-%m-%d %H:%M:%S')")
        self.con.execute("CHECKPOINT")
        secs = time.perf_counter() - began
        os.remove(csv_path)
        return secs

    def load_iot(self, path):
        paths = iot_lp_to_csv(path, self.root)
        began = time.perf_counter()
        for m, csv_path in paths.items():
            types = [(t, "VARCHAR") for t in IOT_TAGS] + [("time", "TIMESTAMP")] + IOT_FIELDS[m]
            self.con.execute(f"CREATE TABLE {m} (" + ", ".join(f"{c} {t}" for c, t in types)
                             + ")")
            columns = "{" + ", ".join(f"'{c}': '{t}'" for c, t in types) + "}"
            self.con.execute(f"INSERT INTO {m} SELECT * FROM read_csv('{csv_path}', "
                             f"header = true, columns = {columns}, "
                             "timestampformat = '%Y-%m-%d %H:%M:%S')")
        self.con.execute("CHECKPOINT")
        secs = time.perf_counter() - began
        for csv_path in paths.values():
            os.remove(csv_path)
        return secs

    def settle(self):
        self.con.execute("CHECKPOINT")
        return os.path.getsize(self.db_path)

    def queries(self, p):
        if getattr(p, "workload", "cpu") == "iot":
            return {name: (text, (lambda t=text: self.con.execute(t).fetchall()),
                           (lambda rows, n=name: iot_duck_answer(n, rows)))
                    for name, text in iot_duck_sql(p).items()}

        def ts(s):
            return f"TIMESTAMP '{utc_text(s)}'"

        def hosts_in(hosts):
            return "hostname IN (" + ", ".join(f"'{h}'" for h in hosts) + ")"

        rng = f"time >= {ts(p.start)} AND time < {ts(p.end)}"
        last_hour = f"time >= {ts(p.hour_ago)} AND time < {ts(p.end)}"
        qs = {
            "single-groupby-1-1-1": "SELECT date_trunc('minute', time) AS m, max(usage_user) "
                                    f"FROM cpu WHERE hostname = '{p.one}' AND {last_hour} "
                                    "GROUP BY m ORDER BY m",
            "single-groupby-1-8-1": "SELECT date_trunc('minute', time) AS m, max(usage_user) "
                                    f"FROM cpu WHERE {hosts_in(p.eight)} AND {last_hour} "
                                    "GROUP BY m ORDER BY m",
            "single-groupby-5-1-12": f"SELECT date_trunc('minute', time) AS m, {maxes(FIELDS[:5])} "
                                     f"FROM cpu WHERE hostname = '{p.one}' AND {rng} "
                                     "GROUP BY m ORDER BY m",
            "cpu-max-all-1": f"SELECT date_trunc('hour', time) AS h, {maxes(FIELDS)} FROM cpu "
                             f"WHERE hostname = '{p.one}' AND {rng} GROUP BY h ORDER BY h",
            "cpu-max-all-8": f"SELECT date_trunc('hour', time) AS h, {maxes(FIELDS)} FROM cpu "
                             f"WHERE {hosts_in(p.eight)} AND {rng} GROUP BY h ORDER BY h",
            "double-groupby-1": "SELECT date_trunc('hour', time) AS h, hostname, avg(usage_user) "
                                f"FROM cpu WHERE {rng} GROUP BY h, hostname ORDER BY h, hostname",
            "high-cpu-1": f"SELECT time, usage_user FROM cpu WHERE hostname = '{p.one}' "
                          f"AND usage_user > 90.0 AND {rng} ORDER BY time",
            "groupby-orderby-limit": "SELECT date_trunc('minute', time) AS m, max(usage_user) "
                                     f"FROM cpu WHERE time >= {ts(p.five_min_ago)} "
                                     f"AND time < {ts(p.end)} GROUP BY m ORDER BY m DESC LIMIT 5",
            # DuckDB's fastest form here (a join on each host's latest time).
            "lastpoint": f"SELECT c.hostname, {', '.join('c.' + f for f in FIELDS)} FROM cpu c "
                         "JOIN (SELECT hostname, max(time) AS t FROM cpu GROUP BY hostname) l "
                         "ON c.hostname = l.hostname AND c.time = l.t ORDER BY c.hostname",
        }
        return {name: (text, (lambda t=text: self.con.execute(t).fetchall()),
                       (lambda rows, n=name: self.answer(n, rows)))
                for name, text in qs.items()}

    @staticmethod
    def answer(name, rows):
        def epoch(v):
            return int(round(v.replace(tzinfo=datetime.timezone.utc).timestamp()))

        if name == "lastpoint":
            return sorted((r[0], *(float(x) for x in r[1:])) for r in rows)
        if name == "double-groupby-1":
            return sorted((epoch(r[0]), r[1], float(r[2])) for r in rows)
        return [(epoch(r[0]), *(float(x) for x in r[1:])) for r in rows]

    def stop(self):
        self.con.close()


def lp_to_csv(lp_path, csv_path):
    """The generated line protocol (no escapes, no quoted strings) as CSV with times as text;
    returns the tag names in first-line order."""
    tags = None
    seconds = {}
    with open(lp_path) as src, open(csv_path, "w", newline="") as dst:
        out = csv.writer(dst)
        for line in src:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            if "\\" in line or '"' in line:
                raise RuntimeError("the DuckDB loader takes only plain generated lines")
            series, fields, stamp = line.split(" ")
            parts = series.split(",")[1:]
            if tags is None:
                tags = [kv.split("=", 1)[0] for kv in parts]
                out.writerow(tags + ["time"] + FIELDS)
            values = dict(kv.split("=", 1) for kv in fields.split(","))
            s = int(stamp) // 1_000_000_000
            text = seconds.get(s)
            if text is None:
                text = seconds[s] = utc_text(s)
            out.writerow([kv.split("=", 1)[1] for kv in parts] + [text] +
                         [values.get(f, "") for f in FIELDS])
    return tags or []


# ------------------------------------------------------------------ the run


def run_mito(args, out):
    mito_dir = os.path.join(out, "mito")
    binary = args.mito
    if binary is None:
        log("building mito (cargo build --release --bin mito)")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        subprocess.run(["cargo", "build", "--release", "--bin", "mito"], cwd=root, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
        binary = os.path.join(target, "release", "mito")
    subprocess.run([binary, "bench", "--workload", args.workload,
                    "--hosts", str(args.hosts), "--hours", str(args.hours),
                    "--runs", str(min(args.runs, 5)), "--out", mito_dir], check=True)
    with open(os.path.join(mito_dir, "report.json")) as f:
        report = json.load(f)
    return mito_dir, report, binary


def measure_peer(peer, lp, ranges, rows, plan, expected):
    """Loads, settles and queries `peer`: every query type over its draws in `plan` (the
    first WARMUPS untimed, the first one's time kept as `first_ms`), each draw's answer
    compared with `expected` (Mito server's, from this run), or kept as the reference when
    `expected` is None."""
    log(f"== {peer.name}")
    result = {"name": peer.name}
    answers = {}
    try:
        peer.start()
        result["version"] = peer.version
        log(f"   loading {rows} rows")
        secs = peer.load(lp, ranges)
        result["rows_per_s"] = rows / secs
        def pid():
            server = getattr(peer, "server", None)
            return server.proc.pid if server else os.getpid()

        result["load_peak_rss_bytes"] = peak_rss(pid())
        log(f"   {result['rows_per_s']:,.0f} rows/s; settling")
        result["disk_bytes"] = peer.settle()
        result["bytes_per_row"] = result["disk_bytes"] / rows
        result["queries"] = {}
        for name in plan:
            times, got, q = [], [], {"median_ms": None}
            try:
                for i, p in enumerate(plan[name]):
                    text, run, answer = peer.queries(p)[name]
                    began = time.perf_counter()
                    raw = run()
                    ms = (time.perf_counter() - began) * 1000.0
                    if i == 0:
                        q["first_ms"], q["query"] = ms, text
                    if i >= WARMUPS:
                        times.append(ms)
                    got.append(answer(raw))
                q["median_ms"] = statistics.median(times)
                q["p90_ms"] = percentile(times, 0.9)
                q["draws"] = len(times)
                if expected is None:
                    answers[name] = got
                    q["answer"] = "reference"
                else:
                    ref = expected.get(name)
                    if ref is None or len(ref) != len(got):
                        q["answer"] = "DIFFERENT: Mito server gave no answers to compare"
                    else:
                        diffs = [(i, d) for i, d in
                                 ((i, compare(e, g)) for i, (e, g) in enumerate(zip(ref, got)))
                                 if d is not None]
                        q["answer"] = "same" if not diffs else (
                            f"DIFFERENT on {len(diffs)} of {len(got)} draws; draw {diffs[0][0]}: "
                            f"{diffs[0][1]}")
            except Exception as e:  # a query this peer cannot answer is reported, not fatal
                q = {"median_ms": None, "answer": f"ERROR: {e}"}
            result["queries"][name] = q
            shown = ("-" if q["median_ms"] is None else
                     f"{q['median_ms']:.2f} ms (p90 {q['p90_ms']:.2f}, first {q['first_ms']:.2f})")
            log(f"   {name:<22} {shown:>40}  {q['answer'][:100]}")
        # Mito server's settle restarts it: this is the restarted process's.
        result["query_peak_rss_bytes"] = peak_rss(pid())
    except Exception as e:
        result["error"] = str(e)
        log(f"   {peer.name} failed: {e}")
    finally:
        try:
            peer.stop()
        except Exception as e:
            log(f"   stopping {peer.name}: {e}")
    return result, answers


def ratio(mito, peer, higher_is_better):
    if not mito or not peer:
        return None
    return mito / peer if higher_is_better else peer / mito


def report(out, mito, ref, peers, args):
    """peers.md and peers.json: every figure of Mito server (`ref`) beside each peer's, with
    the ratio; `mito bench`'s in-process figures (`mito`) apart, labelled."""
    names = [p["name"] for p in peers]
    mode = ("the same fixed parameters repeated (--repeat: profiling, not TSBS)" if args.repeat
            else f"{args.runs} timed random draws per query type (seed {args.seed}, after "
                 f"{WARMUPS} untimed), the same draws for every engine")
    title = (f"IoT trucks, {args.hosts} trucks" if args.workload == "iot"
             else f"TSBS cpu-only, {args.hosts} hosts")
    lines = [f"# Mito and its peers: {title} x {args.hours} h",
             "",
             f"One run, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"queries: {mode}. Each ratio is how many times better Mito server is (> 1: Mito "
             "ahead).",
             "",
             "| figure | Mito server | " + " | ".join(f"{n} | Mito advantage" for n in names)
             + " |",
             "|---|---:|" + "---:|---:|" * len(names)]

    def row(label, ref_value, values, fmt, higher, marks=None):
        cells = [label, fmt(ref_value) if ref_value is not None else "-"]
        for i, v in enumerate(values):
            r = ratio(ref_value, v, higher)
            mark = marks[i] if marks else ""
            cells += [fmt(v) + mark if v is not None else "-", f"{r:.2f}x" if r else "-"]
        lines.append("| " + " | ".join(cells) + " |")

    def mib(v):
        return v / 2**20 if v else None

    row("ingest rows/s", ref.get("rows_per_s"), [p.get("rows_per_s") for p in peers],
        lambda v: f"{v:,.0f}", True)
    row("bytes on disk per row", ref.get("bytes_per_row"), [p.get("bytes_per_row") for p in peers],
        lambda v: f"{v:.2f}", False)
    row("peak RSS MiB, load", mib(ref.get("load_peak_rss_bytes")),
        [mib(p.get("load_peak_rss_bytes")) for p in peers], lambda v: f"{v:,.0f}", False)
    row("peak RSS MiB, queries", mib(ref.get("query_peak_rss_bytes")),
        [mib(p.get("query_peak_rss_bytes")) for p in peers], lambda v: f"{v:,.0f}", False)
    mismatches = []
    for name in ref.get("queries", {}):
        rq = ref.get("queries", {}).get(name, {})
        pqs = [p.get("queries", {}).get(name, {}) for p in peers]
        marks = ["" if pq.get("answer") == "same" else " (!)" for pq in pqs]
        for key, label in (("median_ms", "median ms"), ("p90_ms", "p90 ms"),
                           ("first_ms", "first run ms")):
            row(f"{name} {label}", rq.get(key), [pq.get(key) for pq in pqs],
                lambda v: f"{v:.2f}", False, marks)
        for p, pq in zip(peers, pqs):
            if pq and pq.get("answer") != "same":
                mismatches.append(f"{p['name']} {name}: {pq.get('answer')}")
        if rq.get("median_ms") is None:
            mismatches.append(f"Mito server {name}: {rq.get('answer')}")
    lines += ["", "Versions: " + ", ".join(f"{p['name']} {p.get('version', '?')}"
                                           for p in [ref] + peers),
              "",
              "Mito server: `mito server`, loaded and queried as the other servers: HTTP line "
              "protocol, 5000 lines per POST, 2 writers; SQL over HTTP (`/v1/sql?format=csv`); "
              "its bytes after a clean stop (which flushes), its query-time RSS in the restarted "
              "server. Servers: bytes after their own flush and full merge; query times are "
              "client wall time of the HTTP request; peak RSS is VmHWM after the load and after "
              "the queries. DuckDB: bulk CSV load in-process (not the same kind of ingest "
              "figure), bytes of the .duckdb file. First run: the first draw of each query type "
              "(untimed in the median).",
              ""]
    if mismatches:
        lines += ["Answers that differ from Mito server's or failed (marked (!)):", ""]
        lines += [f"- {m}" for m in mismatches]
    else:
        lines.append("Every peer returned the same answers as Mito server on every draw.")
    for p in [ref] + peers:
        if "error" in p:
            lines.append(f"- {p['name']} failed: {p['error']}")
    lines += ["",
              f"`mito bench` in-process (ingest from the file: {mito['ingest_rows_per_s']:,.0f} "
              f"rows/s, {mito['closed_data_dir_bytes'] / mito['rows']:.2f} bytes/row, peak RSS "
              f"{mito['peak_rss_bytes'] / 2**20:,.0f} MiB; its query figures repeat fixed "
              "parameters and are in mito/report.json, not compared here)."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "peers.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "peers.json"), "w") as f:
        json.dump({"workload": args.workload, "mito_bench": mito, "mito_server": ref,
                   "peers": peers,
                   "seed": args.seed, "runs": args.runs, "repeat": args.repeat}, f, indent=2)
    failed = bool(mismatches) or any("error" in p for p in [ref] + peers)
    return text, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (must not exist yet)")
    ap.add_argument("--workload", choices=["cpu", "iot"], default="cpu",
                    help="TSBS cpu-only, or IoT trucks (--hosts is then the trucks)")
    ap.add_argument("--hosts", type=int, default=4000)
    ap.add_argument("--hours", type=int, default=3)
    ap.add_argument("--peers", default="mito-server,influx,vm,duckdb")
    ap.add_argument("--runs", type=int, default=50,
                    help="timed draws per query type (median, p90), after 2 untimed")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random draws")
    ap.add_argument("--repeat", action="store_true",
                    help="repeat mito bench's fixed parameters instead of drawing (profiling)")
    ap.add_argument("--mito", help="the mito binary (default: cargo build --release)")
    ap.add_argument("--mito-config", help="a config file for mito server (e.g. [engine] sizes)")
    args = ap.parse_args()
    if not 1 <= args.hours <= 24 * 30 or args.hosts < 1:
        ap.error("--hosts must be at least 1 and --hours within 1..720")
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        ap.error(f"{out} exists; choose a new --out")
    os.makedirs(out)
    binary = {}
    kinds = {"mito-server": lambda: MitoServer(os.path.join(out, "mito-server"), binary["path"],
                                                  args.mito_config and os.path.abspath(args.mito_config)),
             "influx": lambda: Influx(os.path.join(out, "influx")),
             "vm": lambda: Vm(os.path.join(out, "vm")),
             "duckdb": lambda: Duck(os.path.join(out, "duckdb"), args.workload)}
    wanted = [k.strip() for k in args.peers.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in kinds]
    if unknown:
        ap.error(f"unknown peers {unknown}; choose from {sorted(kinds)}")
    # Mito server answers first: its answers are what every peer's are compared with.
    wanted = ["mito-server"] + [k for k in wanted if k != "mito-server"]

    def on_signal(signum, _frame):
        Server.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        mito_dir, mito, binary["path"] = run_mito(args, out)
        lp = os.path.join(mito_dir, f"{args.workload}.lp")
        ranges = batches(lp, 5000)
        if args.workload == "iot":
            plan = iot_draws(args.seed, args.hours, WARMUPS + args.runs, args.repeat)
        else:
            plan = draws(args.seed, args.hosts, args.hours, WARMUPS + args.runs, args.repeat)
        ref, expected = measure_peer(kinds["mito-server"](), lp, ranges, mito["rows"], plan, None)
        peers = [measure_peer(kinds[k](), lp, ranges, mito["rows"], plan, expected)[0]
                 for k in wanted[1:]]
    finally:
        Server.stop_all()
    text, failed = report(out, mito, ref, peers, args)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

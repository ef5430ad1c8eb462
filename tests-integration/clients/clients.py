#!/usr/bin/env python3
"""`mito server` against the real clients users point at it (`make clients`, run by .ci/run).

Starts `mito server` with a users file on a port it picks, then:
  - the `influx` 1.x CLI (Debian's influxdb-client) INSERTs through /write;
  - the `influxdb-client` Python package (PyPI) writes through /api/v2/write, gzip on and off;
  - a real Prometheus (Debian's prometheus) scrapes /metrics and remote-writes its samples
    into Mito, both with HTTP Basic credentials;
and checks every write with SQL over HTTP. Missing clients are installed (apt, pip). Every
process is started on 127.0.0.1 and stopped by its PID. Exit status 0 only if all pass.

    python3 tests-integration/clients/clients.py --mito target/debug/mito
"""

import argparse
import csv
import datetime
import io
import gzip  # noqa: F401  (the Python client's gzip uses it; imported to fail early)
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import base64
import csv

# The peers runner's Debian install helper (one copy of "install a package when missing").
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benchmarks", "peers"))
from peers import apt_install, canonical_csv, QUERIES  # noqa: E402

INFLUXDB_CLIENT_VERSION = "1.50.0"
PSYCOPG_VERSION = "3.2.10"
USER, PASSWORD = "alice", "wonder land"
PASSED = []


def log(msg):
    print(f"[clients] {msg}", flush=True)


def pip_install(module, spec):
    try:
        importlib.import_module(module)
    except ImportError:
        log(f"installing {spec} from PyPI")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", spec], check=True)
        importlib.invalidate_caches()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A process started here, stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, argv, log_path, **kw):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, **kw)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def output(self):
        with open(self.log_path) as f:
            return f.read()


def auth_header():
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def sql(base, query):
    url = f"{base}/v1/sql?" + urllib.parse.urlencode({"sql": query})
    req = urllib.request.Request(url, headers={"Authorization": auth_header()})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def wait_for(what, check, timeout=120):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - reported at the end
            last = e
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not within {timeout}s (last error: {last})")


def mito_answers(answers_dir):
    """`mito bench`'s answers, canonical: lists of tuples in the order the peers runner compares."""
    out = {}
    for q in QUERIES:
        with open(os.path.join(answers_dir, f"{q}.csv"), newline="") as f:
            out[q] = canonical_csv(q, list(csv.reader(f)))
    return out


def check(name, ok, detail=""):
    if not ok:
        raise AssertionError(f"{name}: {detail}")
    PASSED.append(name)
    log(f"ok: {name}")


def listening(server, prefix):
    """What `server` printed after `prefix` (an address), once it has printed it."""
    return wait_for(f"mito server {prefix}", lambda: next(
        (l.split(prefix)[1].strip() for l in server.output().splitlines() if prefix in l), None), 60)


def postgres(mito, work, users, procs):
    """psql and psycopg against `mito server` over a `mito bench` data directory."""
    bench = os.path.join(work, "bench")
    subprocess.run([mito, "bench", "--hosts", "4", "--hours", "2", "--runs", "1", "--out", bench],
                   check=True, capture_output=True)
    with open(os.path.join(bench, "report.json")) as f:
        queries = {q["name"]: q["sql"] for q in json.load(f)["queries"]}
    expected = mito_answers(os.path.join(bench, "answers"))
    server = Process([mito, "--data-dir", os.path.join(bench, "data"), "server",
                      "--http", "127.0.0.1:0", "--pg", "127.0.0.1:0", "--users", users,
                      # Bounds the cancel test's cross join if the cancel were lost.
                      "--query-timeout", "120s"],
                     os.path.join(work, "mito-pg.log"))
    procs.append(server)
    pg = listening(server, "PostgreSQL protocol on postgres://")
    listening(server, "listening on http://")
    host, port = pg.rsplit(":", 1)
    log(f"PostgreSQL protocol on {pg}")
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")

    def psql(*argv, password=PASSWORD):
        return subprocess.run(["psql", "-h", host, "-p", port, "-U", USER, "-d", "mito",
                               "-v", "ON_ERROR_STOP=1", "-X", *argv],
                              capture_output=True, text=True, timeout=120,
                              env=dict(env, PGPASSWORD=password))

    r = psql("-c", "\\dt")
    check("psql \\dt lists the tables (SCRAM-SHA-256 login)",
          r.returncode == 0 and " cpu " in r.stdout and "table" in r.stdout, r.stdout + r.stderr)
    r = psql("-c", "\\d cpu")
    check("psql \\d cpu describes the columns",
          r.returncode == 0 and "usage_user" in r.stdout and "double precision" in r.stdout
          and "not null" in r.stdout, r.stdout + r.stderr)
    r = psql("-c", "SELECT 1", password="wrong")
    check("psql with a wrong password is refused",
          r.returncode != 0 and "password authentication failed" in r.stderr.lower(), r.stderr)
    for name in QUERIES:
        r = psql("--csv", "-c", queries[name])
        ok = r.returncode == 0
        got = canonical_csv(name, list(csv.reader(io.StringIO(r.stdout)))) if ok else None
        check(f"psql {name}: the same answer as mito bench", got == expected[name],
              f"{r.stderr}\n{got!r:.300}\n!=\n{expected[name]!r:.300}")
    r = psql("-c", "SELECT nope FROM cpu")
    check("psql: a bad column is an error", r.returncode != 0 and "nope" in r.stderr, r.stderr)

    import psycopg
    dsn = f"host={host} port={port} user={USER} password='{PASSWORD}' dbname=mito"
    with psycopg.connect(dsn, autocommit=True) as conn:
        one_host = "SELECT count(*) AS n, max(usage_user) AS m FROM cpu WHERE hostname = %s"
        want = {h: conn.execute(
                    f"SELECT count(*), max(usage_user) FROM cpu WHERE hostname = '{h}'").fetchone()
                for h in ("host_0", "host_1", "host_2")}
        # prepare=True: a named server-side statement, parsed once, bound per execute.
        got = {h: conn.execute(one_host, (h,), prepare=True).fetchone()
               for h in ("host_0", "host_1", "host_2", "host_0")}
        check("psycopg: a prepared statement reused with new $1 values",
              got == want and all(v[0] > 0 for v in got.values()), f"{got} != {want}")
        start = conn.execute("SELECT min(time) FROM cpu").fetchone()[0]
        rows = conn.execute(
            "SELECT hostname, count(*) FROM cpu WHERE time >= %s AND time < %s "
            "AND usage_user > %s GROUP BY hostname ORDER BY hostname",
            (start, start + datetime.timedelta(hours=1), 10.0)).fetchall()
        check("psycopg: timestamp and float parameters", len(rows) == 4 and rows[0][0] == "host_0",
              rows)
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT hostname, usage_user, time FROM cpu ORDER BY time, hostname LIMIT 3")
            binary_rows = cur.fetchall()
        text_rows = conn.execute(
            "SELECT hostname, usage_user, time FROM cpu ORDER BY time, hostname LIMIT 3").fetchall()
        check("psycopg: binary results equal text results",
              binary_rows == text_rows and isinstance(binary_rows[0][1], float), binary_rows)
        for bad, what in (("SELECT FROM WHERE", "syntax"), ("SELECT * FROM missing", "missing"),
                          ("INSERT INTO cpu (hostname) VALUES ('x')", "write")):
            try:
                conn.execute(bad)
                check(f"psycopg: {what} refused", False, "no error")
            except psycopg.Error as e:
                check(f"psycopg: {what} is an error, the connection stays usable",
                      conn.execute("SELECT 1").fetchone() == (1,), str(e))
        # A cancel request (its own connection, by backend pid and secret key) stops a
        # running cross join; the connection then serves the next query.
        import threading
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        try:
            conn.execute("SELECT sum(a.usage_user * b.usage_user * c.usage_user) "
                         "FROM cpu a, cpu b, cpu c")
            check("psycopg: cancel stops a running query", False, "the query finished")
        except psycopg.errors.QueryCanceled as e:
            check("psycopg: cancel stops a running query",
                  conn.execute("SELECT 1").fetchone() == (1,), str(e))
        finally:
            timer.cancel()
        conn.execute("SET application_name = 'clients'")
        check("psycopg: SET then SHOW", conn.execute("SHOW application_name").fetchone()
              == ("clients",), "")
        grafana(conn, psycopg)
    code = server.stop()
    check("mito server (PostgreSQL) stops with exit 0 on SIGTERM", code == 0, server.output())


# The schema constraint of the table and column lists of Grafana's PostgreSQL data source
# (its query editor's metadata queries): the schemas of the search path.
GRAFANA_SCHEMA = """quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""


def grafana(conn, psycopg):
    """The queries Grafana's PostgreSQL data source sends, as its backend sends them (over
    psycopg's extended protocol here: Grafana itself is not packaged for Debian): the version
    and TimescaleDB checks, the table and column lists, a time series query and a table query
    with its macros expanded, a query that fails."""
    version = conn.execute("SELECT current_setting('server_version_num')::int/100 as version")
    check("grafana: the version check", version.fetchone() == (1600,), "")
    ts = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    check("grafana: the TimescaleDB check finds none", ts.fetchall() == [], "")
    tables = conn.execute(f"""SELECT
    CASE WHEN {GRAFANA_SCHEMA}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog',
        '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal',
        '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental')
    ORDER BY CASE WHEN {GRAFANA_SCHEMA} THEN 0 ELSE 1 END, 1""").fetchall()
    check("grafana: the table list", ("cpu",) in tables, tables)
    table = "'cpu'"
    columns = dict(conn.execute(f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({table}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({table}))[1]
          AND quote_ident(table_name) = (parse_ident({table}))[2]
        ELSE quote_ident(table_name) = {table}
          AND {GRAFANA_SCHEMA}
      END""").fetchall())
    check("grafana: the column list with PostgreSQL types",
          columns.get("time") == "timestamp without time zone"
          and columns.get("hostname") == "text"
          and columns.get("usage_user") == "double precision", columns)
    # $__timeGroupAlias("time", '1m') and $__timeFilter("time") as Grafana expands them.
    start, = conn.execute("SELECT min(time) FROM cpu").fetchone()
    end = start + datetime.timedelta(minutes=30)
    window = f"\"time\" BETWEEN '{start.isoformat()}Z' AND '{end.isoformat()}Z'"
    series = conn.execute(
        f"SELECT floor(extract(epoch from \"time\")/60)*60 AS \"time\", hostname AS metric, "
        f"avg(usage_user) AS value FROM cpu WHERE {window} GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    direct = conn.execute(
        "SELECT count(*) FROM (SELECT date_bin(INTERVAL '1 minute', time), hostname FROM cpu "
        "WHERE time >= %s AND time <= %s GROUP BY 1, 2)", (start, end)).fetchone()[0]
    check("grafana: a time series query with its macros expanded",
          len(series) == direct and series[0][0] == start.replace(
              tzinfo=datetime.timezone.utc).timestamp(), f"{series[:3]} ({direct} expected)")
    rows = conn.execute(f"SELECT \"time\", hostname, usage_user FROM cpu WHERE {window} "
                        "ORDER BY \"time\", hostname").fetchall()
    check("grafana: a table query", rows and rows[0][0] == start, rows[:3])
    try:
        conn.execute("SELECT 1 / 0")
        check("grafana: division by zero is an error", False, "no error")
    except psycopg.errors.DivisionByZero as e:
        check("grafana: division by zero is SQLSTATE 22012", e.sqlstate == "22012", str(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mito", default="target/debug/mito")
    args = ap.parse_args()
    mito = os.path.abspath(args.mito)
    apt_install("influx", "influxdb-client")
    apt_install("prometheus", "prometheus")
    pip_install("influxdb_client", f"influxdb-client=={INFLUXDB_CLIENT_VERSION}")
    apt_install("psql", "postgresql-client")
    pip_install("psycopg", f"psycopg[binary]=={PSYCOPG_VERSION}")

    work = tempfile.mkdtemp(prefix="mito-clients-")
    procs = []
    try:
        users = os.path.join(work, "users")
        line = subprocess.run([mito, "user", "add", USER], input=PASSWORD + "\n",
                              capture_output=True, text=True, check=True).stdout
        with open(users, "w") as f:
            f.write(line)
        data = os.path.join(work, "data")
        # HTTP only here (the PostgreSQL checks start their own server), so no fixed port.
        server = Process([mito, "--data-dir", data, "server", "--http", "127.0.0.1:0",
                          "--no-pg", "--users", users], os.path.join(work, "mito.log"))
        procs.append(server)
        addr = listening(server, "listening on http://")
        base = f"http://{addr}"
        host, port = addr.rsplit(":", 1)
        log(f"mito server on {base}")

        # The influx 1.x CLI: INSERT goes to POST /write with the credentials.
        for i in range(3):
            r = subprocess.run(["influx", "-host", host, "-port", port, "-username", USER,
                                "-password", PASSWORD, "-database", "mito", "-precision", "s",
                                "-execute", f"INSERT cli,host=h{i} value={i}.5 {1700000000 + i}"],
                               capture_output=True, text=True, timeout=60)
            check(f"influx CLI INSERT {i}", r.returncode == 0 and "ERR" not in r.stdout + r.stderr,
                  r.stdout + r.stderr)
        rows = sql(base, "SELECT host, value FROM cli ORDER BY host")
        check("influx CLI rows queryable", rows == [
            {"host": "h0", "value": 0.5}, {"host": "h1", "value": 1.5},
            {"host": "h2", "value": 2.5}], rows)
        r = subprocess.run(["influx", "-host", host, "-port", port, "-username", USER,
                            "-password", "wrong", "-database", "mito",
                            "-execute", "INSERT cli,host=bad value=1"],
                           capture_output=True, text=True, timeout=60)
        check("influx CLI with a wrong password is refused",
              "wrong user name or password" in r.stdout + r.stderr,
              r.stdout + r.stderr)
        rows = sql(base, "SELECT count(*) AS n FROM cli WHERE host = 'bad'")
        check("nothing written with a wrong password", rows == [{"n": 0}], rows)

        # The InfluxDB 2.x Python client (token `user:password`, as InfluxDB 1.8 takes it).
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS
        for gz in (False, True):
            with InfluxDBClient(url=base, token=f"{USER}:{PASSWORD}", org="o",
                                enable_gzip=gz) as client:
                w = client.write_api(write_options=SYNCHRONOUS)
                records = [f"py,host=p{j},gzip={str(gz).lower()} v={j}i {1700000000000 + j}"
                           for j in range(1000)]
                w.write(bucket="b", record=records, write_precision=WritePrecision.MS)
        rows = sql(base, "SELECT gzip, count(*) AS n, sum(v) AS s FROM py GROUP BY gzip ORDER BY gzip")
        check("influxdb-client writes (plain and gzip) queryable", rows == [
            {"gzip": "false", "n": 1000, "s": 499500},
            {"gzip": "true", "n": 1000, "s": 499500}], rows)

        # A real Prometheus: scrapes /metrics, remote-writes into Mito.
        prom_port = free_port()
        prom_dir = os.path.join(work, "prometheus")
        os.makedirs(prom_dir)
        config = os.path.join(prom_dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: mito
    basic_auth: {{username: {USER}, password: "{PASSWORD}"}}
    static_configs:
      - targets: ["{addr}"]
remote_write:
  - url: {base}/api/v1/prom/write
    basic_auth: {{username: {USER}, password: "{PASSWORD}"}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
""")
        prom = Process(["prometheus", f"--config.file={config}",
                        f"--storage.tsdb.path={prom_dir}/data",
                        f"--web.listen-address=127.0.0.1:{prom_port}"],
                       os.path.join(work, "prometheus.log"))
        procs.append(prom)
        # `up` of the mito job is 1 only if the scrape of /metrics (with credentials)
        # succeeded; it reaches Mito only through remote write.
        rows = wait_for("Prometheus' samples in Mito", lambda: sql(
            base, "SELECT max(greptime_value) AS up, count(*) AS n FROM up WHERE job = 'mito'"))
        check("Prometheus scraped /metrics and remote-wrote `up` into Mito",
              rows and rows[0]["up"] == 1.0, rows)
        rows = wait_for("a scraped Mito metric in Mito", lambda: sql(
            base, "SELECT max(greptime_value) AS v FROM mito_write_rows_total WHERE op = 'put'"))
        check("Mito's own metrics, scraped and written back, are queryable",
              rows and rows[0]["v"] is not None and rows[0]["v"] > 0, rows)
        log(prom.output().splitlines()[-1] if prom.output() else "")
        code = prom.stop()
        code = server.stop()
        check("mito server stops with exit 0 on SIGTERM", code == 0, server.output())
        postgres(mito, work, users, procs)
    except Exception as e:  # noqa: BLE001
        log(f"FAILED: {e}")
        for p in procs:
            p.stop()
            log(f"--- {p.log_path}\n" + p.output()[-4000:])
        print(f"clients: {len(PASSED)} passed, 1 failed")
        return 1
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"clients: {len(PASSED)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes report.md and the gnuplot charts of a load-tests/run.sh results directory.

    python3 load-tests/report.py load-tests/results/2026-12-05

Reads raw.csv (one line per wrk run), purge.csv, meta.txt and stampede.md (when present) from
the directory; writes report.md, cpu.png, rps.png, purge.png and the gnuplot inputs next to
them. Standard library only; gnuplot is optional (no charts without it).
"""

import csv
import os
import shutil
import statistics
import subprocess
import sys

SCENARIOS = {
    "hot": "Hot hit, one key, 1 KiB",
    "keys": "10 000 keys × 4 KiB (hits)",
    "big": "1 MiB hit, one key",
    "close": "Hot hit on a new connection per request (`Connection: close`)",
    "miss": "Miss path: a new no-store URL per request",
    "l2": "Shared tier: L2 (Redis) hit vs L1 (memory) hit, Cachet only",
}
TARGET_NAMES = {
    "cachet": "Cachet",
    "nginx": "nginx",
    "varnish": "Varnish",
    "origin": "origin direct",
    "cachet-l1": "Cachet, L1 hit (memory)",
    "cachet-l2": "Cachet, L2 hit (Redis)",
}
PURGE_TARGETS = {"cachet": "memory only", "cachet-l1": "with Redis"}


def read_meta(path):
    meta = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("=")
                meta[key] = value
    return meta


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def values(rows, field):
    return [v for v in (num(r.get(field)) for r in rows) if v is not None]


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, digits=None):
    if x is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(x) >= 1000 else 1 if abs(x) >= 100 else 2 if abs(x) >= 1 else 3
    return f"{x:,.{digits}f}".replace(",", " ")


def spread(xs, digits=None):
    """'median (min–max)', or just the value for one run."""
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return fmt(xs[0], digits)
    return f"{fmt(med(xs), digits)} ({fmt(min(xs), digits)}–{fmt(max(xs), digits)})"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}×"


class Results:
    def __init__(self, rows):
        self.rows = rows

    def runs(self, scenario, target):
        return [r for r in self.rows if r["scenario"] == scenario and r["target"] == target]

    def targets(self, scenario):
        seen = []
        for r in self.rows:
            if r["scenario"] == scenario and r["target"] not in seen:
                seen.append(r["target"])
        return seen

    def median(self, scenario, target, field):
        return med(values(self.runs(scenario, target), field))


def scenario_table(res, scenario):
    targets = res.targets(scenario)
    have_nginx = "nginx" in targets
    have_varnish = "varnish" in targets
    head = ["target", "req/s", "p50 ms", "p99 ms", "CPU µs/req"]
    if have_nginx:
        head += ["CPU vs nginx", "req/s vs nginx", "p99 vs nginx"]
    if have_varnish:
        head += ["CPU vs Varnish"]
    if scenario == "miss":
        head += ["req/s vs origin direct"]
    if scenario == "l2":
        head += ["CPU vs L1 hit", "shared-tier hits / requests", "redis-server µs/req"]
    head += ["origin requests", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in targets:
        runs = res.runs(scenario, t)
        cpu = res.median(scenario, t, "cpu_us_per_req")
        rps = res.median(scenario, t, "rps")
        p99 = res.median(scenario, t, "p99_ms")
        cells = [
            TARGET_NAMES.get(t, t),
            spread(values(runs, "rps")),
            spread(values(runs, "p50_ms")),
            spread(values(runs, "p99_ms")),
            spread(values(runs, "cpu_us_per_req")),
        ]
        # The origin's own row: its CPU is not a proxy's, so no CPU ratios there.
        proxy = t != "origin"
        if have_nginx:
            cells += [
                fmt_ratio(ratio(cpu, res.median(scenario, "nginx", "cpu_us_per_req"))) if proxy else "—",
                fmt_ratio(ratio(rps, res.median(scenario, "nginx", "rps"))),
                fmt_ratio(ratio(p99, res.median(scenario, "nginx", "p99_ms"))),
            ]
        if have_varnish:
            cells += [fmt_ratio(ratio(cpu, res.median(scenario, "varnish", "cpu_us_per_req"))) if proxy else "—"]
        if scenario == "miss":
            cells += [fmt_ratio(ratio(rps, res.median("miss", "origin", "rps")))]
        if scenario == "l2":
            cells += [fmt_ratio(ratio(cpu, res.median("l2", "cachet-l1", "cpu_us_per_req")))]
            shares = [
                num(r["l2_hits"]) / num(r["requests"])
                for r in runs
                if num(r.get("l2_hits")) is not None and num(r.get("requests"))
            ]
            cells += [spread(shares, 3), spread(values(runs, "redis_cpu_us_per_req"))]
        origin = values(runs, "origin_requests")
        cells += [
            ", ".join(str(int(v)) for v in origin) or "n/a",
            str(int(sum(values(runs, "errors")))),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(res):
    """The issue's targets: (description, figures, met or None when not measured)."""
    out = []

    def cpu(s, t):
        return res.median(s, t, "cpu_us_per_req")

    def check(desc, value, limit, figures):
        met = None if value is None else value <= limit
        out.append((desc, figures, met))

    r = ratio(cpu("hot", "cachet"), cpu("hot", "nginx"))
    check("Hot hit: Cachet CPU ≤ 0.6× nginx", r, 0.6,
          f"{fmt(cpu('hot', 'cachet'))} vs {fmt(cpu('hot', 'nginx'))} µs/req = {fmt_ratio(r)}")
    p_c, p_n = res.median("hot", "cachet", "p99_ms"), res.median("hot", "nginx", "p99_ms")
    r = ratio(p_c, p_n)
    check("Hot hit: Cachet p99 ≤ nginx", r, 1.0,
          f"{fmt(p_c)} vs {fmt(p_n)} ms = {fmt_ratio(r)}")
    r = ratio(cpu("keys", "cachet"), cpu("keys", "nginx"))
    check("10 000 keys: Cachet CPU ≤ 0.6× nginx", r, 0.6,
          f"{fmt(cpu('keys', 'cachet'))} vs {fmt(cpu('keys', 'nginx'))} µs/req = {fmt_ratio(r)}")
    r = ratio(cpu("big", "cachet"), cpu("big", "nginx"))
    check("1 MiB hit: Cachet CPU ≤ nginx", r, 1.0,
          f"{fmt(cpu('big', 'cachet'))} vs {fmt(cpu('big', 'nginx'))} µs/req = {fmt_ratio(r)}")
    rc, ro = res.median("miss", "cachet", "rps"), res.median("miss", "origin", "rps")
    r = ratio(rc, ro)
    met = None if r is None else r >= 0.5
    out.append(("Miss path: Cachet req/s ≥ 0.5× origin direct",
                f"{fmt(rc)} vs {fmt(ro)} req/s = {fmt_ratio(r)}", met))
    r = ratio(cpu("l2", "cachet-l2"), cpu("l2", "cachet-l1"))
    check("L2 hit: CPU ≤ 2× L1 hit", r, 2.0,
          f"{fmt(cpu('l2', 'cachet-l2'))} vs {fmt(cpu('l2', 'cachet-l1'))} µs/req = {fmt_ratio(r)}")
    return out


def purge_table(rows):
    if not rows:
        return ""
    lines = [
        "| Cachet | N tagged entries | memory entries after the fill | POST /purge ms | next request ms | next Cache-Status | hit before the purge ms | fill s (curl, 16 parallel) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = []
    for r in rows:
        k = (r["target"], int(r["n"]))
        if k not in keys:
            keys.append(k)
    for target, n in keys:
        runs = [r for r in rows if r["target"] == target and int(r["n"]) == n]
        statuses = sorted({r["next_status"].replace("_", " ") for r in runs})
        http = sorted({r["purge_http"] for r in runs})
        lines.append("| " + " | ".join([
            PURGE_TARGETS.get(target, target),
            f"{n:,}".replace(",", " "),
            spread(values(runs, "memory_entries"), 0),
            spread(values(runs, "purge_ms")) + ("" if http == ["200"] else f" (HTTP {', '.join(http)})"),
            spread(values(runs, "next_ms")),
            "; ".join(f"`{s}`" for s in statuses),
            spread(values(runs, "hit_ms")),
            spread(values(runs, "fill_s")),
        ]) + " |")
    return "\n".join(lines)


def gnuplot(directory, res, purge_rows):
    """Writes the .dat/.gp files and, when gnuplot is installed, the PNGs. Returns the PNGs."""
    made = []
    order = [s for s in ["hot", "keys", "big", "close", "miss"] if res.targets(s)]
    targets = [t for t in ["cachet", "nginx", "varnish"] if any(t in res.targets(s) for s in order)]
    labels = {"hot": "hot 1 KiB", "keys": "10k keys 4 KiB", "big": "1 MiB",
              "close": "hot, Connection: close", "miss": "miss path"}
    scripts = []
    if order and targets:
        for field, name, ylabel, logscale in [
            ("cpu_us_per_req", "cpu", "target CPU µs per request (median, log scale)", True),
            ("rps", "rps", "requests per second (median, log scale)", True),
        ]:
            rows = [labels[s] for s in order]
            columns = list(targets)
            if field == "rps" and "origin" in res.targets("miss"):
                columns.append("origin")
            data = ["scenario " + " ".join(f'"{TARGET_NAMES[t]}"' for t in columns)]
            for s, label in zip(order, rows):
                cells = []
                for t in columns:
                    v = res.median(s, t, field)
                    cells.append("NaN" if v is None else f"{v:.3f}")
                data.append(f'"{label}" ' + " ".join(cells))
            if field == "cpu_us_per_req" and res.targets("l2"):
                for t, label in [("cachet-l1", "L1 hit (Cachet)"), ("cachet-l2", "L2 hit (Cachet)")]:
                    v = res.median("l2", t, field)
                    cells = ["NaN"] * len(columns)
                    cells[0] = "NaN" if v is None else f"{v:.3f}"
                    data.append(f'"{label}" ' + " ".join(cells))
            with open(os.path.join(directory, f"{name}.dat"), "w", encoding="utf-8") as f:
                f.write("\n".join(data) + "\n")
            cols = ", ".join(
                f"'{name}.dat' using {i + 2}:xtic(1) title columnheader({i + 2})" if i == 0
                else f"'' using {i + 2} title columnheader({i + 2})"
                for i in range(len(columns))
            )
            scripts.append((name, f"""set terminal pngcairo noenhanced size 1000,560 font ",11"
set output '{name}.png'
set title "{ylabel.split(' (')[0]}"
set ylabel "{ylabel}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left
set grid ytics
{'set logscale y' if logscale else 'set yrange [0:*]'}
set xtics nomirror
plot {cols}
"""))
    if purge_rows:
        series = []
        for target in ["cachet", "cachet-l1"]:
            runs = [r for r in purge_rows if r["target"] == target]
            if not runs:
                continue
            ns = sorted({int(r["n"]) for r in runs})
            lines = ["n purge_ms next_ms"]
            for n in ns:
                sel = [r for r in runs if int(r["n"]) == n]
                lines.append(f"{n} {med(values(sel, 'purge_ms')):.3f} {med(values(sel, 'next_ms')):.3f}")
            fname = f"purge-{target}.dat"
            with open(os.path.join(directory, fname), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            what = PURGE_TARGETS[target]
            series.append(f"'{fname}' using 1:2 with linespoints lw 2 title 'POST /purge, {what}'")
            series.append(f"'{fname}' using 1:3 with linespoints lw 2 dt 2 title 'next request (miss), {what}'")
        scripts.append(("purge", f"""set terminal pngcairo noenhanced size 900,520 font ",11"
set output 'purge.png'
set title "Tag purge: latency vs tagged entries (median, curl time_total)"
set xlabel "tagged entries N"
set ylabel "ms"
set logscale x
set yrange [0:*]
set grid
set key top left
plot {', '.join(series)}
"""))
    have = shutil.which("gnuplot") is not None
    for name, script in scripts:
        path = os.path.join(directory, f"{name}.gp")
        with open(path, "w", encoding="utf-8") as f:
            f.write(script)
        if have:
            done = subprocess.run(["gnuplot", f"{name}.gp"], cwd=directory,
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0 and os.path.exists(os.path.join(directory, f"{name}.png")):
                made.append(name)
            else:
                print(f"report.py: gnuplot {name}.gp failed: {done.stderr.strip()}", file=sys.stderr)
    return made


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory = sys.argv[1]
    meta = read_meta(os.path.join(directory, "meta.txt"))
    res = Results(read_csv(os.path.join(directory, "raw.csv")))
    purge_rows = read_csv(os.path.join(directory, "purge.csv"))
    charts = gnuplot(directory, res, purge_rows)
    smoke = meta.get("smoke") == "1"

    md = []
    md.append(f"# Load test: Cachet, nginx, Varnish — {meta.get('started', '')}")
    md.append("")
    if smoke:
        md.append("**Smoke run** (`SMOKE=1`: one short run per scenario, small purge sizes): it checks "
                  "that the harness works; the figures are not measurements.")
        md.append("")
    md.append("Produced by `load-tests/run.sh`; raw per-run numbers in `raw.csv` and `purge.csv`, "
              "charts below. Cells are *median (min–max)* over the runs.")
    md.append("")
    md.append("## Machine and set-up")
    md.append("")
    md.append(f"- {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')}), Linux {meta.get('kernel', '?')}; "
              f"load average (1, 5, 15 min) at the start {meta.get('load_start', '?')}, after the wrk "
              f"scenarios {meta.get('load_end', '?')}, at the end {meta.get('load_end_all', '?')}")
    md.append(f"- Cachet `{meta.get('cachet', '?')}` (release build; {meta.get('rustc', '')}), "
              f"nginx {meta.get('nginx', '?').replace('nginx/', '')}, Varnish {meta.get('varnish', '?').replace('varnish-', '')}, "
              f"{meta.get('redis', '?')}, {meta.get('wrk', '?')}")
    md.append(f"- Pinning: {meta.get('pinning', '?')}. Each target gets one core: Cachet "
              "`worker_threads = 1`, nginx `worker_processes 1`, Varnish its default thread pools "
              "(all its threads pinned to CPU 1).")
    md.append(f"- wrk: {meta.get('threads', '?')} thread(s), {meta.get('connections', '?')} keep-alive "
              f"connections, {meta.get('duration', '?')} s per run, {meta.get('runs', '?')} run(s) per "
              f"scenario and target (targets interleaved run by run), after {meta.get('warmup', '?')} s "
              f"of the same load per target; `Host: cachet.test` on every request.")
    md.append("- CPU µs/req: utime + stime of every process of the target (Cachet's process; nginx "
              "master + worker; varnishd manager + child), from `/proc/<pid>/stat` before and after "
              f"the run (clock ticks of {1e6 / float(meta.get('clk_tck', '100')):.0f} µs), divided by "
              "the requests wrk completed. Latency is wrk's, per request, on loopback.")
    md.append("- Targets: Cachet (memory tier 256 MiB, route `/obj/`, no Redis unless stated), "
              "nginx `proxy_cache` (cache on disk in the temporary directory, `sendfile on`, "
              "`proxy_cache_lock on`, `proxy_cache_use_stale updating`, "
              "`proxy_cache_background_update on`, keep-alive to the origin), Varnish "
              "(`-s malloc,256m`, builtin VCL plus `beresp.grace = 30s`). Access logs off.")
    md.append("")

    md.append("## Targets of issue 9")
    md.append("")
    md.append("| target | figures (medians) | met? |")
    md.append("|---|---|---|")
    for desc, figures, met in goals(res):
        mark = "not measured" if met is None else ("**yes**" if met else "**no**")
        md.append(f"| {desc} | {figures} | {mark} |")
    md.append("")

    for scenario, title in SCENARIOS.items():
        if not res.targets(scenario):
            continue
        md.append(f"## {title}")
        md.append("")
        keys = meta.get("keys", "")
        last = str(int(keys) - 1) if keys.isdigit() else "?"
        md.append(DESCRIPTIONS[scenario].format(last=last))
        md.append("")
        md.append(scenario_table(res, scenario))
        md.append("")

    if purge_rows:
        md.append("## Purge by tag: latency vs number of tagged entries (Cachet)")
        md.append("")
        md.append(DESCRIPTIONS["purge"])
        md.append("")
        md.append(purge_table(purge_rows))
        md.append("")

    stampede = os.path.join(directory, "stampede.md")
    if os.path.exists(stampede):
        md.append("## Stampede, stale-while-revalidate, 3 instances (`load-tests/stampede.sh`)")
        md.append("")
        status = meta.get("stampede_exit", "?")
        md.append(f"Output of `load-tests/stampede.sh` (RUNS={meta.get('stampede_runs', '?')}; exit status "
                  f"{status}{', every check held' if status == '0' else ''}); its log is "
                  "`stampede.log`.")
        md.append("")
        with open(stampede, encoding="utf-8") as f:
            text = f.read().strip()
        # Its own heading becomes a paragraph here.
        md.append(text.replace("## Stampede:", "**Stampede:**", 1))
        md.append("")

    if charts:
        md.append("## Charts")
        md.append("")
        captions = {
            "cpu": "Target CPU µs per request (median; log scale)",
            "rps": "Requests per second (median; log scale)",
            "purge": "Purge latency vs tagged entries",
        }
        for name in charts:
            md.append(f"![{captions[name]}]({name}.png)")
            md.append("")

    with open(os.path.join(directory, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md).rstrip() + "\n")
    return 0


DESCRIPTIONS = {
    "hot": "`GET /obj/hot1k?size=1024&max_age=86400`: one key, fetched once before the warm-up; "
           "every measured request is a fresh hit.",
    "keys": "`GET /obj/k{{0..{last}}}?size=4096&max_age=86400`: every key fetched once (curl, 16 in "
            "parallel), then each wrk thread walks its share of the keys in turn (wrk/paths.lua), "
            "so every request is a hit on a different key than its neighbours.",
    "big": "`GET /obj/big1m?size=1048576&max_age=86400`: one 1 MiB key, a hit on every request.",
    "close": "The hot hit's request with `Connection: close`: every request a new connection "
             "(accepted, read, answered and closed by the target, RFC 9112 §9.6), so the cost per "
             "request includes the connection's set-up and teardown. No target of the issue; it "
             "guards the close path.",
    "miss": "`GET /obj/miss-<run>-<thread>-<n>?size=1024`: every request a new URL, and the origin "
            "answers `Cache-Control: no-store`, so each one is a lookup miss, an origin exchange "
            "and nothing stored. *origin direct* is wrk against the origin itself (it runs on "
            "CPU 0 with wrk in every case, so only the proxy is added); its CPU column is the "
            "origin's.",
    "l2": "`GET /obj/l{{0..{last}}}?size=4096&max_age=86400` on two Cachet instances sharing one "
          "redis-server (on CPU 0), filled through the first. *L1 hit*: the first instance, whose "
          "memory tier holds every key. *L2 hit*: the second, with `memory_max_bytes = \"64KiB\"` and "
          "`tenant_max_share = 0.001` (one partition may keep 65 bytes), so it never keeps an entry "
          "in memory and every request is read from Redis (both with `op_timeout = \"1s\"`, so that a "
          "Redis reply slowed by other load on the machine is not counted as a miss); checked with its /metrics "
          "(`cachet_tier_ops_total{{tier=\"shared\",op=\"get\",outcome=\"hit\"}}` per request). The "
          "redis-server's own CPU per request is shown apart (it is not in Cachet's figure).",
    "purge": "For each N: N entries `GET /obj/<tag>-{0..N-1}?size=64&max_age=86400&tags=<tag>` "
             "(the origin sends `Surrogate-Key: <tag>`) filled through Cachet with curl, then one "
             "hit, `POST /purge {\"tags\":[\"<tag>\"]}` on the admin port and the same URL again "
             "(expected: a miss to the origin). Times are curl's `time_total` for one request on "
             "loopback (connection set-up included). *memory only*: the Cachet without Redis; "
             "*with Redis*: the L1 instance of the shared-tier scenario (the purge is recorded in "
             "Redis and published to every instance before the answer).",
}


if __name__ == "__main__":
    sys.exit(main())

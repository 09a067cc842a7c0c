#!/usr/bin/env python3
"""Report of a chaos.sh run: python3 chaos_report.py RAW_DIR OUT_DIR.

RAW_DIR holds what chaos.sh collected: events.tsv (name, epoch seconds or a value),
wrk-<i>.out (tally.lua's SEC/TOTAL lines), metrics-<tag>-<i>.txt (/metrics scrapes at the
window boundaries w0..w4 and at the end), cachet-<i>.log, meta.env. Writes OUT_DIR/report.md
(also printed), OUT_DIR/chaos-seconds.csv and OUT_DIR/events.tsv. Exit status 1 when a Redis
fault window saw a 5xx or a fault did not recover.
"""

import collections
import datetime
import os
import re
import sys

WINDOWS = ["baseline", "redis-kill", "redis-pause", "origin-kill", "instance-restart"]
SCRAPES = ["w0", "w1", "w2", "w3", "w4", "end"]
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s+(WARN|ERROR)\s+(.*)$")


def read_meta(raw):
    meta = {}
    with open(os.path.join(raw, "meta.env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    return meta


def read_events(raw):
    events = {}
    with open(os.path.join(raw, "events.tsv")) as f:
        for line in f:
            name, _, value = line.rstrip("\n").partition("\t")
            events[name] = value
    return events


def num(events, name):
    v = events.get(name)
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def read_wrk(path):
    """Per second: Counter of kinds; plus the TOTAL line as a dict."""
    seconds = collections.defaultdict(collections.Counter)
    total = {}
    if not os.path.exists(path):
        return seconds, total
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "SEC":
                c = seconds[int(parts[1])]
                if parts[2] == "latmax":  # a maximum per thread, not a count
                    c["latmax"] = max(c["latmax"], int(parts[3]))
                else:
                    c[parts[2]] += int(parts[3])
            elif parts and parts[0] == "TOTAL":
                total = {k: int(v) for k, v in (p.split("=") for p in parts[1:])}
    return seconds, total


def read_metrics(path):
    """[(name, labels dict, value)] of a Prometheus/OpenMetrics text file."""
    samples = []
    if not os.path.exists(path):
        return samples
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)", line)
            if not m:
                continue
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            try:
                samples.append((m.group(1), labels, float(m.group(4))))
            except ValueError:
                pass
    return samples


def metric(samples, name, **want):
    return sum(v for n, labels, v in samples
               if n == name and all(labels.get(k) == w for k, w in want.items()))


def group(samples, name, by):
    out = collections.Counter()
    for n, labels, v in samples:
        if n == name:
            out[tuple(labels.get(b, "") for b in by)] += v
    return out


def fmt_s(x):
    return "n/a" if x is None else f"{x:.2f}"


def main():
    raw, out = sys.argv[1], sys.argv[2]
    meta = read_meta(raw)
    ev = read_events(raw)
    n_inst = int(meta["INSTANCES"])
    restart = int(meta["RESTART_INSTANCE"])
    conns = int(meta["CONNECTIONS"])
    t0 = num(ev, "load_start")
    t_end = num(ev, "load_end")

    # Window boundaries: each fault's start event; the baseline starts with the load.
    starts = [t0] + [num(ev, f"{w}:start") for w in WINDOWS[1:]]
    bounds = []
    for k, w in enumerate(WINDOWS):
        s = starts[k]
        e = starts[k + 1] if k + 1 < len(WINDOWS) else t_end
        bounds.append((w, s, e))

    def window_of(second):
        mid = second + 0.5
        for k, (_, s, e) in enumerate(bounds):
            if s is not None and e is not None and s <= mid < e:
                return k
        return 0 if mid < t0 else len(WINDOWS) - 1

    # ---- clients
    clients = {}
    for i in range(1, n_inst + 1):
        clients[i] = read_wrk(os.path.join(raw, f"wrk-{i}.out"))

    per = {}  # (window, client) -> Counter
    csv_rows = []
    for i, (seconds, _) in clients.items():
        for sec in sorted(seconds):
            c = seconds[sec]
            k = window_of(sec)
            agg = per.setdefault((k, i), collections.Counter())
            lm = max(agg["latmax"], c["latmax"])
            agg.update(c)
            agg["latmax"] = lm
            resp = sum(v for kk, v in c.items() if kk.startswith("status:"))
            agg["responses"] += resp
            agg["seconds"] += 1
            if resp == 0:
                agg["silent_seconds"] += 1
            s2 = sum(v for kk, v in c.items() if kk.startswith("status:2"))
            s5 = sum(v for kk, v in c.items() if kk.startswith("status:5"))
            csv_rows.append([sec, f"{sec - t0:.0f}", WINDOWS[k], i, c["sent"], resp, s2, s5,
                             resp - s2 - s5, c["cs:hit"], c["cs:shared"], c["cs:swr"],
                             c["cs:sie"], c["cs:fwd"], f"{c['latmax'] / 1000:.2f}"])

    def latency(k, only=None):
        """(p50, p99, max) in ms of window k over every client (or client `only`); the
        percentiles are the upper bounds of power-of-2 buckets."""
        buckets = collections.Counter()
        mx = 0
        for i in range(1, n_inst + 1):
            if only is not None and i != only:
                continue
            agg = per.get((k, i), collections.Counter())
            mx = max(mx, agg["latmax"])
            for kk, v in agg.items():
                if kk.startswith("lat:"):
                    buckets[int(kk[4:])] += v
        n = sum(buckets.values())
        if n == 0:
            return None

        def pct(q):
            acc = 0
            for b in sorted(buckets):
                acc += buckets[b]
                if acc >= q * n:
                    return 2 ** (b + 1) / 1000
            return mx / 1000
        return pct(0.5), pct(0.99), mx / 1000

    def fmt_lat(t):
        return "n/a" if t is None else f"≤{t[0]:.2g} / ≤{t[1]:.3g} / {t[2]:.1f}"

    def client_errors(k, i):
        """Connection errors of client i in window k: requests sent but never answered.
        wrk's own counters are exact but not timed; when they are all 0, so is this."""
        total = clients[i][1]
        if sum(total.get(x, 0) for x in ("connect", "read", "write", "timeout")) == 0:
            return 0
        agg = per.get((k, i), collections.Counter())
        diff = agg["sent"] - agg["responses"]
        # Up to CONNECTIONS requests are in flight at a window's edges.
        return diff if diff > conns else 0

    # ---- metrics deltas per window
    scr = {}
    for tag in SCRAPES:
        for i in range(1, n_inst + 1):
            scr[(tag, i)] = read_metrics(os.path.join(raw, f"metrics-{tag}-{i}.txt"))

    def delta(k, fn):
        total = 0.0
        a, b = SCRAPES[k], SCRAPES[k + 1]
        for i in range(1, n_inst + 1):
            if WINDOWS[k] == "instance-restart" and i == restart:
                # The restarted process counts from 0; what the old one served between
                # the boundary scrape and its exit (a few ms of draining) is not counted.
                total += fn(scr[(b, i)])
            else:
                total += fn(scr[(b, i)]) - fn(scr[(a, i)])
        return total

    def delta_group(k, name, by):
        out = collections.Counter()
        a, b = SCRAPES[k], SCRAPES[k + 1]
        for i in range(1, n_inst + 1):
            after = group(scr[(b, i)], name, by)
            before = collections.Counter() if (WINDOWS[k] == "instance-restart" and i == restart) \
                else group(scr[(a, i)], name, by)
            for key in set(after) | set(before):
                d = after[key] - before[key]
                if d:
                    out[key] += d
        return out

    # ---- logs: WARN/ERROR lines per window
    def epoch_of(ts):
        base, _, frac = ts.partition(".")
        dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
        return dt.timestamp() + (float("0." + frac) if frac else 0.0)

    log_counts = collections.defaultdict(collections.Counter)  # window -> Counter(message)
    log_inst = collections.defaultdict(collections.Counter)  # window -> Counter(instance)
    for i in range(1, n_inst + 1):
        path = os.path.join(raw, f"cachet-{i}.log")
        if not os.path.exists(path):
            continue
        with open(path, errors="replace") as f:
            for line in f:
                m = LOG_LINE.match(line.strip())
                if not m:
                    continue
                t = epoch_of(m.group(1))
                k = None
                for kk, (_, s, e) in enumerate(bounds):
                    if s is not None and e is not None and s <= t < e:
                        k = kk
                if k is None:
                    continue
                msg = re.sub(r"\s+\S+=(\"[^\"]*\"|\S+)", "", m.group(3)).strip()
                log_counts[k][f"{m.group(2)} {msg}"] += 1
                log_inst[k][i] += 1

    # ---- recovery
    def ev_delta(a, b):
        x, y = num(ev, a), num(ev, b)
        return None if x is None or y is None else y - x

    rec = {
        "redis-kill": ev_delta("redis-kill:fault_end", "redis-kill:recovered"),
        "redis-pause": ev_delta("redis-pause:fault_end", "redis-pause:recovered"),
        "origin-kill": ev_delta("origin-kill:fault_end", "origin-kill:recovered"),
        "instance-restart": ev_delta("instance-restart:fault_end", "instance-restart:recovered"),
    }
    closed = {w: ev_delta(f"{w}:fault_end", f"{w}:breaker_closed") for w in ("redis-kill", "redis-pause")}
    detect = {w: ev_delta(f"{w}:start", f"{w}:first_down") for w in ("redis-kill", "redis-pause")}
    drain = ev_delta("instance-restart:start", "instance-restart:exited")
    gap = ev_delta("instance-restart:start", "instance-restart:recovered")
    not_recovered = [w for w in WINDOWS if f"{w}:not_recovered" in ev or f"{w}:not_exited" in ev]

    # ---- the report
    L = []
    L.append(f"# Chaos under load: {n_inst} Cachet instances on one redis-server")
    L.append("")
    L.append(f"{meta['DATE']}; {meta['MACHINE']} at the start, {meta['LOAD_END_AVG']} at the end. "
             f"Cachet `{meta['CACHET_COMMIT']}`, redis-server {meta['REDIS_VERSION']}, wrk {meta['WRK_VERSION']}; "
             f"{meta['PINNING']}.")
    L.append("")
    L.append(f"Load: {n_inst} × `wrk -t{conns} -c{conns}` ({meta['THINK_MS']} ms think time per connection), one per "
             f"instance, {meta['DURATION']} s, random keys `/obj/c{{0..{int(meta['KEYS']) - 1}}}?size={meta['SIZE']}"
             f"&max_age={meta['MAX_AGE']}`. Route: `stale_while_revalidate = \"30s\"`, `stale_if_error = \"10m\"`, "
             f"`timeout = \"2s\"`; each instance `worker_threads = 1`, 64 MiB memory tier, Redis `key_prefix = \"chaos:\"`.")
    L.append("")

    fault_text = {
        "baseline": "none (caches warm up)",
        "redis-kill": f"`kill -9` redis-server, started again (empty) {meta['REDIS_DOWN']} s later",
        "redis-pause": f"`SIGSTOP` redis-server for {meta['REDIS_PAUSE']} s, then `SIGCONT`",
        "origin-kill": f"`kill -9` the origin, started again {meta['ORIGIN_DOWN']} s later",
        "instance-restart": f"`SIGTERM` instance {restart}, wait for its exit, start it again",
    }
    rec_text = {
        "baseline": "",
        "redis-kill": f"{fmt_s(rec['redis-kill'])} (breakers closed: {fmt_s(closed['redis-kill'])})",
        "redis-pause": f"{fmt_s(rec['redis-pause'])} (breakers closed: {fmt_s(closed['redis-pause'])})",
        "origin-kill": fmt_s(rec["origin-kill"]),
        "instance-restart": fmt_s(rec["instance-restart"]),
    }
    for w in not_recovered:
        rec_text[w] = f"**not recovered** within {meta['RECOVERY_TIMEOUT']} s"

    L.append("| window | fault | from–to s | requests | 5xx | other errors | stale served | recovery s |")
    L.append("|---|---|---|---|---|---|---|---|")
    fivexx = {}
    summary = {}
    for k, (w, s, e) in enumerate(bounds):
        tot = collections.Counter()
        for i in range(1, n_inst + 1):
            tot.update(per.get((k, i), collections.Counter()))
        status = {int(kk.split(":")[1]): v for kk, v in tot.items() if kk.startswith("status:")}
        n5 = {c: v for c, v in status.items() if c >= 500}
        n_other_status = sum(v for c, v in status.items() if c >= 300 and c < 500)
        conn_by = {i: client_errors(k, i) for i in range(1, n_inst + 1)}
        conn = sum(conn_by.values())
        fivexx[w] = n5
        stale_swr = delta(k, lambda sm: metric(sm, "cachet_stale_served_total", reason="stale-while-revalidate"))
        stale_sie = delta(k, lambda sm: metric(sm, "cachet_stale_served_total", reason="stale-if-error"))
        summary[w] = (tot, status, conn)
        five = str(sum(n5.values()))
        if n5:
            five += " (" + ", ".join(f"{c}: {v}" for c, v in sorted(n5.items())) + ")"
        other = []
        if n_other_status:
            other.append(f"{n_other_status} non-2xx")
        if conn:
            other.append(f"{conn} connection (" + ", ".join(
                f"client of instance {i}: {v}" for i, v in conn_by.items() if v) + ")")
        L.append(f"| {w} | {fault_text[w]} | {s - t0:.1f}–{e - t0:.1f} | {tot['responses']} | {five} | "
                 f"{'; '.join(other) if other else '0'} | {stale_swr + stale_sie:.0f} "
                 f"(SWR {stale_swr:.0f}, SIE {stale_sie:.0f}) | {rec_text[w]} |")
    L.append("")
    L.append("Recovery: Redis faults, from redis-server being back (restarted / `SIGCONT`) until every "
             "instance's `/readyz` says `\"shared_tier\":\"up\"` (polled every 100 ms), and in brackets until every "
             "instance's breaker is `closed` again (requests use Redis again); origin, from the origin "
             "listening again until a never-requested key through instance 1 answers 200 (polled every 100 ms); "
             "instance restart, from starting the new process until its client listener answers 200.")
    L.append("")
    notes = []
    for w in ("redis-kill", "redis-pause"):
        notes.append(f"- {w}: first `/readyz` saying `down` {fmt_s(detect[w])} s after the fault began"
                     if detect[w] is not None else f"- {w}: no instance's `/readyz` said `down` during the fault")
    k_origin = WINDOWS.index("origin-kill")
    failed_origin = sum(v for (st,), v in delta_group(k_origin, "cachet_origin_requests_total", ("status",)).items()
                        if st in ("error", "timeout") or st.startswith("5"))
    down_s = ev_delta("origin-kill:start", "origin-kill:fault_end")
    if failed_origin and down_s:
        notes.append(f"- origin-kill: {failed_origin:.0f} failed origin exchanges (background refreshes of stale "
                     f"entries) in the window, about {failed_origin / down_s:.0f} per second of outage for "
                     f"{summary['origin-kill'][0]['responses']} client responses; WARN/ERROR log "
                     f"lines: {sum(log_inst.get(k_origin, collections.Counter()).values())}")
    exit_status = ev.get("instance-restart:exit_status", "n/a")
    notes.append(f"- instance-restart: instance {restart} exited {fmt_s(drain)} s after `SIGTERM` (exit status "
                 f"{exit_status}); it answered again {fmt_s(gap)} s after `SIGTERM`")
    L.extend(notes)
    L.append("")

    # ---- checks
    checks = []
    failed = False
    for w in ("redis-kill", "redis-pause"):
        n = sum(fivexx[w].values())
        ok = n == 0
        failed |= not ok
        checks.append(f"- {'ok    ' if ok else 'FAILED'} {w}: {n} 5xx (target 0)")
    n = sum(fivexx["origin-kill"].values())
    bad_codes = {c: v for c, v in fivexx["origin-kill"].items() if c not in (502, 504)}
    checks.append(f"- {'ok    ' if n == 0 else 'NOTE  '} origin-kill: {n} 5xx (target ~0: every key was cached "
                  f"before the fault and stale-if-error covers 10 min)"
                  + (f"; codes other than 502/504: {bad_codes}" if bad_codes else ""))
    k_restart = WINDOWS.index("instance-restart")
    others = {i: client_errors(k_restart, i) + sum(
        v for kk, v in per.get((k_restart, i), collections.Counter()).items()
        if kk.startswith("status:") and not kk.startswith("status:2"))
        for i in range(1, n_inst + 1) if i != restart}
    checks.append(f"- {'ok    ' if not any(others.values()) else 'NOTE  '} instance-restart: clients of the other "
                  f"instances saw {sum(others.values())} errors or non-2xx ({', '.join(f'instance {i}: {v}' for i, v in others.items())})")
    for w in not_recovered:
        failed = True
        checks.append(f"- FAILED {w}: not recovered within {meta['RECOVERY_TIMEOUT']} s")
    if not not_recovered:
        checks.append(f"- ok     every fault recovered within {meta['RECOVERY_TIMEOUT']} s")
    L.append("Checks:")
    L.append("")
    L.extend(checks)
    L.append("")

    # ---- per client in the restart window, and wrk's totals
    L.append(f"## Clients ({n_inst} wrk processes, one per instance)")
    L.append("")
    L.append("| client of | requests (whole run) | restart window: responses | restart window: 5xx | restart window: connection errors | restart window: seconds without a response | restart window: latency p50 / p99 / max ms | wrk socket errors, whole run (connect/read/write/timeout) | wrk p50 / p99 / max ms, whole run |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for i in range(1, n_inst + 1):
        agg = per.get((k_restart, i), collections.Counter())
        tot = clients[i][1]
        five = sum(v for kk, v in agg.items() if kk.startswith("status:5"))
        name = f"instance {i}" + (" (restarted)" if i == restart else "")
        L.append(f"| {name} | {tot.get('requests', 'n/a')} | {agg['responses']} | {five} | {client_errors(k_restart, i)} | "
                 f"{agg['silent_seconds']} | {fmt_lat(latency(k_restart, i))} | {tot.get('connect', 0)}/{tot.get('read', 0)}/{tot.get('write', 0)}/{tot.get('timeout', 0)} | "
                 f"{tot.get('p50_us', 0) / 1000:.2f} / {tot.get('p99_us', 0) / 1000:.2f} / {tot.get('max_us', 0) / 1000:.1f} |")
    L.append("")
    L.append("Connection errors are requests wrk wrote (or tried to) that got no response, counted per second "
             "by `tally.lua`; while a listener is gone wrk retries in a tight loop, so the count is attempts, "
             "not users. wrk's own counters (last column) are exact but not timed.")
    L.append("")

    # ---- details per window
    L.append("## Details per window")
    L.append("")
    L.append("| window | latency p50 / p99 / max ms | Cache-Status seen by clients (hit / shared / SWR / SIE / fwd) | origin exchanges by status | epoch clears | shared-tier ops by outcome | WARN/ERROR log lines (per instance) |")
    L.append("|---|---|---|---|---|---|---|")
    for k, (w, _, _) in enumerate(bounds):
        tot, _, _ = summary[w]
        cs = f"{tot['cs:hit']} / {tot['cs:shared']} / {tot['cs:swr']} / {tot['cs:sie']} / {tot['cs:fwd']}"
        origin = delta_group(k, "cachet_origin_requests_total", ("status",))
        origin_s = ", ".join(f"{s[0]}: {v:.0f}" for s, v in sorted(origin.items())) or "0"
        clears = delta(k, lambda sm: metric(sm, "cachet_epoch_clears_total"))
        ops = delta_group(k, "cachet_tier_ops_total", ("tier", "op", "outcome"))
        ops_s = ", ".join(f"{o[1]} {o[2]}: {v:.0f}" for o, v in sorted(ops.items())
                          if o[0] == "shared" and o[2] not in ("hit", "miss", "ok")) or "no errors"
        li = log_inst.get(k, collections.Counter())
        logs_s = ", ".join(f"{i}: {li[i]}" for i in range(1, n_inst + 1)) if li else "0"
        L.append(f"| {w} | {fmt_lat(latency(k))} | {cs} | {origin_s} | {clears:.0f} | {ops_s} | {logs_s} |")
    L.append("")
    any_logs = False
    for k, (w, _, _) in enumerate(bounds):
        if log_counts.get(k):
            if not any_logs:
                L.append("Most frequent WARN/ERROR messages per window (fields stripped):")
                L.append("")
                any_logs = True
            L.append(f"- {w}: " + "; ".join(f"`{m}` ×{c}" for m, c in log_counts[k].most_common(4)))
    if any_logs:
        L.append("")
    L.append("Latency: from writing the request to the end of the response, per request (`tally.lua`, one "
             "connection per wrk thread); p50 and p99 are upper bounds of power-of-2 buckets, max is exact.")
    L.append("")
    L.append("Raw data: `chaos-seconds.csv` (per second and client: sent, responses, 2xx, 5xx, other, "
             "Cache-Status classes, max latency), `events.tsv` (fault timeline, seconds after the load started).")
    L.append("")
    report = "\n".join(L)

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(report)
    with open(os.path.join(out, "chaos-seconds.csv"), "w") as f:
        f.write("epoch,t_s,window,client,sent,responses,s2xx,s5xx,other,hit,shared,swr,sie,fwd,latmax_ms\n")
        for row in sorted(csv_rows, key=lambda r: (r[0], r[3])):
            f.write(",".join(str(x) for x in row) + "\n")
    with open(os.path.join(out, "events.tsv"), "w") as f:
        f.write("event\tseconds_after_load_start_or_value\n")
        for name, value in ev.items():
            try:
                v = f"{float(value) - t0:.3f}" if float(value) > 1e9 else value
            except ValueError:
                v = value
            f.write(f"{name}\t{v}\n")
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

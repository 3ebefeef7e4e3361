#!/usr/bin/env bash
# Profiles Herald under one herald-bench burst: where its CPU goes, per thread and per part,
# and how long each thread ran and waited for a core. This is how the figures in README's
# "Performance" section were explained. Needs `perf` (apt-get install -y linux-perf).
#
#   scripts/profile-burst.sh [MESSAGES]      (default 20000)
#
# Leaves target/profile/perf.data for `perf report -i target/profile/perf.data`.
set -euo pipefail
cd "$(dirname "$0")/.."
messages="${1:-20000}"
out=target/profile
port=18080
rm -rf "$out" && mkdir -p "$out"
cargo build --release --bin herald --bin herald-bench
target/release/herald serve --db "$out/h.redb" --listen "127.0.0.1:$port" \
  --allow-http-destinations --allow-destination 127.0.0.0/8 >"$out/herald.log" 2>&1 &
herald=$!
trap 'kill $herald 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$out/h.redb.admin-token" ] && break; sleep 0.1; done

threads() { for t in /proc/$herald/task/*; do echo "$(cat "$t/comm") $(cat "$t/schedstat")"; done; }
threads >"$out/sched-before"
perf record -F 799 --call-graph dwarf,16384 -p "$herald" -o "$out/perf.data" 2>"$out/perf.log" &
perf=$!
sleep 1
target/release/herald-bench --url "http://127.0.0.1:$port" --token "$(cat "$out/h.redb.admin-token")" \
  --scenario burst --messages "$messages" | grep -E "accepted \(|end-to-end \("
kill -INT $perf && wait $perf || true
threads >"$out/sched-after"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^herald_writer_(batch_jobs|commit_seconds)_(sum|count)'

echo "== per thread during the burst: seconds on a core, seconds runnable but waiting"
paste "$out/sched-before" "$out/sched-after" |
  awk '{ printf "%-16s on-cpu %6.3f  waiting %6.3f\n", $1, ($6-$2)/1e9, ($7-$3)/1e9 }' | sort | uniq

echo "== share of Herald's samples, per thread and by the first Herald or library frame"
perf script -i "$out/perf.data" 2>/dev/null | python3 -c '
import re, sys, collections
per = collections.defaultdict(collections.Counter); total = 0
for sample in sys.stdin.read().split("\n\n"):
    lines = [l for l in sample.split("\n") if l.strip()]
    if len(lines) < 2: continue
    total += 1
    frames = [re.sub(r" \(.*\)$", "", re.sub(r"\+0x[0-9a-f]+", "", l.strip().split(" ", 1)[-1])) for l in lines[1:]]
    key = "kernel" if "[kernel" in lines[1] else next((re.sub(r"<.*", "", f.lstrip("<"))[:70] for f in frames
        if re.match(r"^<?(herald|reqwest|hyper|hyper_util|redb|axum|tokio|url|serde_json|postcard|http)::", f)), "other")
    per[lines[0].split()[0]][key] += 1
for thread, counts in sorted(per.items(), key=lambda kv: -sum(kv[1].values())):
    print(f"{thread}: {100 * sum(counts.values()) / total:.1f}%")
    for key, n in counts.most_common(8):
        print(f"   {100 * n / total:5.1f}%  {key}")
'

#!/usr/bin/env bash
# Wait up to $1 seconds for the named marker files ($2..., in $W), then pack what exists into $OUT
# (at most 8 files of 16 MiB come back: tarballs over 15 MB are split).
source "$(dirname "$0")/env.sh"
end=$(( $(date +%s) + ${1:-0} )); shift
while [ $(date +%s) -lt $end ]; do ok=1; for m in "$@"; do [ -f $W/$m ] || ok=0; done; [ $ok = 1 ] && break; sleep 5; done
ls $W; for l in $LOGS/*.log; do echo "--- $l"; tail -6 $l; done; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
[ -n "$OUT" ] || exit 0
pack() { name=$1; shift; tar czf $W/$name.tgz "$@" 2>/dev/null; if [ $(stat -c %s $W/$name.tgz) -gt 15000000 ]; then split -b 15000000 -d $W/$name.tgz $OUT/$name.tgz.; else cp $W/$name.tgz $OUT/; fi; }
pack bench -C $W bench logs q_fp32 q_bf16 --exclude=chunks
[ -d $R ] && pack full_llm -C $W --exclude='chunks' --exclude='.partial' --exclude='*.safetensors' full
[ -d $W/full_lca ] && pack full_lca -C $W --exclude='.partial' --exclude='*.safetensors' full_lca
ls -l $OUT

# Sourced by the other scripts: where things live on the lent GPU machine (see README.md here).
W=/root/work                       # everything the GPU runs write (outside the copied repo)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PYTHONPATH=/tmp/site:$REPO/src PYTHONUNBUFFERED=1
export ASSOCMEM_CACHE_DIR=$W/cache MPLBACKEND=Agg HOME=/root
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_BYTES=253113024
CF=$W/counterfact_reconstructed.json
R=$W/full                          # the full-profile reproduce folder
B=$W/bench                         # benchmark JSONs
LOGS=$W/logs
MODELS="gemma3-270m smollm2-135m"
py() { python3 "$@"; }
am() { python3 -m assocmem.cli "$@"; }
mkdir -p $W $LOGS $B
export ASSOCMEM_GIT_COMMIT=$(cat $W/COMMIT 2>/dev/null || echo unknown)

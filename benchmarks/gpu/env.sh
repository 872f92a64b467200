# Sourced by the other scripts: where things live on the lent GPU machine (see README.md here).
W=/root/work                       # everything this session writes (outside the copied repo)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PYTHONPATH=/tmp/site:$REPO/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export ASSOCMEM_CACHE_DIR=$W/cache MPLBACKEND=Agg
GGUF=$W/gemma-3-270m-q4_k_m.gguf
GGUF_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
CF=$W/counterfact_reconstructed.json
R=$W/full                          # the full-profile reproduce folder
MG=$W/multigpu                     # issue 5 runs
LOGS=$W/logs
LCA_IDS="fig3a,c2,c3,c4,fig3b,c6,spectra,fig3c,c8,mixing,length"
LLM_IDS="fig1,hijack-sample,fig2a,fig2b,appB-reverse,appB-associated,atlas,diagnostics"
py() { python3 "$@"; }
am() { python3 -m assocmem.cli "$@"; }
mkdir -p $W $LOGS $MG
export ASSOCMEM_GIT_COMMIT=$(cat $W/COMMIT 2>/dev/null || echo unknown)

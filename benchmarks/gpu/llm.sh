#!/usr/bin/env bash
# The GGUF is assembled; then on GPU 1: issue-5 single-process baseline (also de-quantises the GGUF
# into the cache), issue-3 GPU throughput, the LLM experiments of the full profile; then the issue-5
# runs that need both GPUs; when the LCA job is done too, the 2-GPU scaling benchmark and the report.
source "$(dirname "$0")/env.sh"
cd $REPO
bash benchmarks/gpu/install_gemma.sh || { touch $W/ALL_DONE; exit 1; }
BASE="--model $GGUF --counterfact $CF --batch-size 64 --quiet"
ID="$BASE --schemes not-think relation --per-relation 5 --max-n 3"       # 170 records x 2 schemes x n 0..3
SMALL="$BASE --schemes not-think --per-relation 2 --max-n 2"              # 68 records x n 0..2, for CPU
step() { echo "== $1 $(date +%T)"; }
{
step id1; CUDA_VISIBLE_DEVICES=1 am hijack $ID --device cuda --out $MG/id1
tok=$(ls -d $ASSOCMEM_CACHE_DIR/models/*/ | head -1)
step bench-fp32-loop; CUDA_VISIBLE_DEVICES=1 py benchmarks/bench_hijack_batched.py --model $GGUF --counterfact $CF --device cuda --per-relation 6 --batch-size 128 --out $MG/bench_gpu_loop.json
step bench-throughput; for dt in float32 bfloat16; do CUDA_VISIBLE_DEVICES=1 py benchmarks/bench_hijack_batched.py --model $GGUF --counterfact $CF --device cuda --dtype $dt --per-relation 60 --batch-size 256 --skip-loop --repeats 3 --out $MG/bench_gpu_$dt.json; done
step llm-full; CUDA_VISIBLE_DEVICES=1 am reproduce --profile full --device cuda --only $LLM_IDS --model $GGUF --counterfact $CF --out $R
touch $W/LLM_DONE
step id2; torchrun --nproc-per-node 2 -m assocmem.cli hijack $ID --device cuda --out $MG/id2
# 0=500MiB put the whole model on GPU 1 (the 671 MB embedding comes first); 850MiB splits it over both.
step split; am hijack $SMALL --device-map auto --max-memory "0=850MiB,1=8GiB,cpu=8GiB" --out $MG/split
step cpu; am hijack $SMALL --device cpu --out $MG/cpu
step wait-lca; while [ ! -f $W/LCA_DONE ]; do sleep 5; done
step scale1; torchrun --nproc-per-node 1 benchmarks/bench_hijack_multigpu.py --tokenizer $tok --counterfact $CF --per-relation 20 --out $MG/scale1.json
step scale2; torchrun --nproc-per-node 2 benchmarks/bench_hijack_multigpu.py --tokenizer $tok --counterfact $CF --per-relation 20 --out $MG/scale2.json
step report; am reproduce --profile full --device cuda --model $GGUF --counterfact $CF --out $R
step done
} > $LOGS/llm.log 2>&1
touch $W/ALL_DONE

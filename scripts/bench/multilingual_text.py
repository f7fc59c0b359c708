#!/usr/bin/env python3
"""Rewrite a bench corpus with text in several scripts, for measuring what UTF-8 checks cost.

The bench corpora's text is ASCII, which every UTF-8 checker validates at memory speed; real
corpora are multilingual, where a scalar checker is several times slower than a SIMD one. This
copies the first FILES files of IN (a gen_corpus `corpus/` directory) to OUT with the `text`
column replaced by ~400-byte strings of Cyrillic, Japanese, German and Arabic words (each value
unique), every other column as it was, zstd level 1, row groups of 131,072 rows.

    target/bench-venv/bin/python scripts/bench/multilingual_text.py \
        target/bench-data/write-heavy-4000000/corpus target/bench-data/multilingual/corpus 4
"""
import glob
import os
import random
import sys

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = (
    "Привет мир это тест данных для обучения модели 日本語のテキストです これは試験 "
    "Größe über Straße Ärger für Öl مرحبا بالعالم هذا اختبار"
).split()


def main() -> None:
    src, out, files = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    rng = random.Random(1)
    for i, path in enumerate(sorted(glob.glob(os.path.join(src, "*.parquet")))[:files]):
        table = pq.read_table(path)
        pool = []
        for _ in range(5000):
            words, size = [], 0
            while size < 400:
                w = rng.choice(WORDS)
                words.append(w)
                size += len(w.encode()) + 1
            pool.append(" ".join(words))
        text = pa.array(
            [pool[rng.randrange(len(pool))] + str(j) for j in range(table.num_rows)], pa.string()
        )
        table = table.set_column(table.schema.get_field_index("text"), "text", text)
        pq.write_table(
            table,
            os.path.join(out, f"part-{i:05d}.parquet"),
            compression="zstd",
            compression_level=1,
            row_group_size=131072,
        )


if __name__ == "__main__":
    main()

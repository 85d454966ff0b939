"""Copy one role of a split (e.g. ``train``) of a dataset folder into a new dataset folder.

    python benchmarks/study_role_folder.py DATASET_DIR SPLITS.json ROLE OUT_DIR

Used by ``benchmarks/run_study.sh`` only when the installed rbcray's ``shapes`` / ``stats`` /
``train`` lack ``--splits FILE --split ROLE``: the copy keeps the dataset's name and the image
stems, so whatever those stages record names exactly the images of ROLE and the evaluation's
overlap check compares like with like.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from rbcray.data.dataset import Dataset, DatasetWriter
    from rbcray.data.splits import load_splits, select

    src, splits_path, role, out = argv
    if (Path(out) / "dataset.json").is_file():
        print(f"{out}: exists")
        return 0
    ds = Dataset.open(src)
    stems = select(ds.stems, load_splits(splits_path), role, where=src)
    with DatasetWriter(out, name=ds.name, kind=ds.meta.get("kind", "annotated"),
                       config=ds.meta.get("config"), source={**(ds.meta.get("source") or {}), "role": role}) as w:
        for s in stems:
            p = ds.image_path(s)
            w.add(s, ds.load_instances(s), image_bytes=p.read_bytes(), image_ext=p.suffix,
                  categories=ds.load_categories(s))
    print(f"{out}: {len(stems)} {role} image(s) of {ds.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

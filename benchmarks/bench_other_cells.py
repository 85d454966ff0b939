"""White cells and platelets per image: real (derived masks) vs synthetic masks (issue 14 item 7).

    rbcray annotate chula-rbc-12 --out chula && rbcray split chula --out chula-splits.json
    rbcray stats chula --splits chula-splits.json --split train --json train-stats.json --no-color
    rbcray shapes chula --splits chula-splits.json --split train --out train-bank.parquet
    rbcray masks --shapes train-bank.parquet --stats train-stats.json --other-cells stats --num 400 --out synth
    python benchmarks/bench_other_cells.py chula --splits chula-splits.json --role train --role test synth

Per category (2 WBC, 3 Platelet): the mean count per image and the share of images holding any,
each with a 95 % bootstrap interval over images (or masks), for the real images of each ``--role``
(derived masks: not ground truth) and for the synthetic masks; the last line is
``wbc_mean_real=… wbc_mean_synth=… platelet_mean_real=… platelet_mean_synth=…`` (first role).
"""

from __future__ import annotations

import argparse

import numpy as np

from rbcray.data.dataset import Dataset

NAMES = {2: "WBC", 3: "Platelet"}


def counts(ds: Dataset, stems: list[str]) -> np.ndarray:
    """(images, 2) counts of categories 2 and 3 per image (cells cut by the border included)."""
    out = []
    for s in stems:
        present = {int(v) for v in np.unique(ds.load_instances(s)) if v}
        cats = ds.load_categories(s)
        out.append([sum(1 for i in present if cats.get(i, 1) == c) for c in NAMES])
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def boot(x: np.ndarray, stat, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Statistic and its 95 % percentile bootstrap interval over rows."""
    rng = np.random.default_rng(seed)
    b = [stat(x[rng.integers(0, len(x), len(x))]) for _ in range(n)]
    return float(stat(x)), float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("real")
    ap.add_argument("synth")
    ap.add_argument("--splits")
    ap.add_argument("--role", action="append", help="split role(s) of the real images (default: all)")
    ap.add_argument("--boot", type=int, default=2000)
    a = ap.parse_args()
    real = Dataset.open(a.real)
    sets = []
    if a.splits:
        from rbcray.data.splits import load_splits

        sp = load_splits(a.splits)
        for role in a.role or ["train"]:
            sets.append((f"real {role} ({len(sp.stems(role))} images)", counts(real, list(sp.stems(role)))))
    else:
        sets.append((f"real ({len(real.stems)} images)", counts(real, list(real.stems))))
    syn = Dataset.open(a.synth)
    sets.append((f"synthetic ({len(syn.stems)} masks)", counts(syn, list(syn.stems))))
    print("| set | WBC per image | WBC: images with any | platelets per image | platelets: images with any |")
    print("| --- | ---: | ---: | ---: | ---: |")
    means = []
    for label, x in sets:
        cells = []
        for j in range(2):
            m = boot(x[:, j], np.mean, a.boot)
            z = boot(x[:, j], lambda v: (v > 0).mean(), a.boot)
            cells += [f"{m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}]", f"{z[0]:.3f} [{z[1]:.3f}, {z[2]:.3f}]"]
        means.append(x.mean(0))
        print(f"| {label} | " + " | ".join(cells) + " |")
    r, s = means[0], means[-1]
    print(f"wbc_mean_real={r[0]:.3f} wbc_mean_synth={s[0]:.3f} platelet_mean_real={r[1]:.3f} platelet_mean_synth={s[1]:.3f}")


if __name__ == "__main__":
    main()

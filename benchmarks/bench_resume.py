"""Resume cost on object storage (issue 12): a no-op re-run over thousands of finished shards.

Builds a planned output of ``--shards`` one-sample shards on the loopback S3 server (moto): the
real ``prepare`` writes the plan, then every shard object and its ``_index/`` marker are put
directly (tiny bodies; a re-run never reads them, so their content does not matter). The manifest
is absent, as after a run that died after its last shard. Then it times a real re-run
(``prepare`` + ``run_local``: lease, plan, one LIST of ``_index/``, manifest) and counts the HTTP
requests it makes with a counting WSGI wrapper around the moto server. A second, smaller output
with 1 KiB and 512 KiB shard bodies shows the resume time does not depend on shard size.

Ends with: ``resume_s=<float> requests_per_1000_shards=<float> list_requests_per_1000_shards=<float>
shards=<int> resume_s_1k_bodies=<float> resume_s_512k_bodies=<float>``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from moto_counting import counting_s3  # noqa: E402

from rbcray.config import from_dict  # noqa: E402
from rbcray.generate import shards as S  # noqa: E402
from rbcray.generate.config import GenerateConfig  # noqa: E402
from rbcray.generate.engine import prepare, run_local  # noqa: E402


def tiny_inputs(tmp: Path) -> dict[str, str]:
    """Real inputs, small: 3 annotated Chula images, their stats and shapes, a tiny pix2pixHD."""
    from rbcray.data.annotate import annotate_source, config_for_source
    from rbcray.data.dataset import Dataset
    from rbcray.data.sources import open_source
    from rbcray.data.stats import dataset_stats
    from rbcray.io import write_json
    from rbcray.models.pix2pixhd.model import Pix2PixHDConfig
    from rbcray.synth.shapes import build_shape_bank
    from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, train

    src = open_source("chula-rbc-12")
    ds = annotate_source(src, tmp / "annotated", config_for_source(src.name), limit=3)
    write_json(tmp / "stats.json", dataset_stats(Dataset.open(ds)))
    build_shape_bank(ds, tmp / "shapes.parquet")
    tiny = Pix2PixHDTrainConfig(
        model=Pix2PixHDConfig(ngf=4, ndf=4, nef=4, n_down_global=3, n_blocks_global=1, n_blocks_local=1, n_down_E=3),
        crop_size=(64, 64), stage1_epochs=1, stage2_epochs=1, freeze_global_epochs=1, vgg_loss=False,
        samples_per_epoch=4, batch_size=2, style_clusters=3)
    train(tiny, ds, str(tmp / "model"), log=lambda m: None)
    return {"checkpoint": str(tmp / "model"), "shapes": str(tmp / "shapes.parquet"), "stats": str(tmp / "stats.json")}


def build(s3, inputs: dict[str, str], out: str, n: int, body_bytes: int) -> GenerateConfig:
    import boto3

    cfg = from_dict(GenerateConfig, {**inputs, "out": out, "num_samples": n, "shard_size": 1, "width": 64, "height": 48,
                                     "progress": False})
    prepare(cfg, log=lambda m: None).release()  # the plan, as the first run wrote it
    client = boto3.client("s3")
    bucket, prefix = out[len("s3://"):].split("/", 1)
    body = b"x" * body_bytes
    sha = hashlib.sha256(body).hexdigest()

    def put(k: int) -> None:
        name = S.plan_shards(n, 1)[k].name
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=body)
        sh = S.plan_shards(n, 1)[k]
        marker = S.marker_name({"start": sh.start, "stop": sh.stop, "bytes": body_bytes, "sha256": sha})
        client.put_object(Bucket=bucket, Key=f"{prefix}/{S.INDEX}/{marker}", Body=b"")

    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(n)))
    return cfg


def resume(s3, cfg: GenerateConfig) -> tuple[float, list[str]]:
    s3.reset()
    t = time.perf_counter()
    plan = prepare(cfg, log=lambda m: None)
    assert not plan.todo, f"{len(plan.todo)} shard(s) not recognised as done"
    manifest = run_local(plan, log=lambda m: None)
    seconds = time.perf_counter() - t
    assert manifest["n_shards"] == cfg.num_samples
    return seconds, s3.requests()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=5000)
    ap.add_argument("--size-shards", type=int, default=300, help="shards per output of the shard-size comparison")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_resume_"))
    try:
        inputs = tiny_inputs(tmp)
        with counting_s3() as s3:
            import boto3

            boto3.client("s3").create_bucket(Bucket="bench")
            cfg = build(s3, inputs, "s3://bench/big", args.shards, 64)
            seconds, reqs = resume(s3, cfg)
            kinds: dict[str, int] = {}
            for r in reqs:
                kinds[r.split(" /")[0]] = kinds.get(r.split(" /")[0], 0) + 1
            lists = sum(r.startswith("GET LIST") for r in reqs)
            shard_reads = sum(r.startswith("GET /bench/big/train-") for r in reqs)
            print(f"no-op re-run over {args.shards} shards: {seconds:.2f} s, {len(reqs)} requests {kinds}, "
                  f"shard bodies read: {shard_reads}")
            per_size = {}
            for nbytes in (1024, 512 * 1024):
                c = build(s3, inputs, f"s3://bench/size{nbytes}", args.size_shards, nbytes)
                per_size[nbytes], r2 = resume(s3, c)
                print(f"{args.size_shards} shards of {nbytes} B: re-run {per_size[nbytes]:.2f} s, {len(r2)} requests")
        k = args.shards / 1000
        print(f"resume_s={seconds:.3f} requests_per_1000_shards={len(reqs) / k:.2f} list_requests_per_1000_shards={lists / k:.2f} "
              f"shards={args.shards} resume_s_1k_bodies={per_size[1024]:.3f} resume_s_512k_bodies={per_size[512 * 1024]:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

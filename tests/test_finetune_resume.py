"""A resumed fine-tuning run does what the first one would have done (k-fold search included)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_run_killed_during_the_kfold_search_searches_again_on_resume(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import angioseg.train.finetune as ft
    from angioseg.data.preprocess import PreprocessConfig

    calls: list[int] = []
    real = ft.kfold_search

    def killed_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the process dies inside the search: no kfold.json yet
        return real(*args, **kwargs)

    monkeypatch.setattr(ft, "kfold_search", killed_first)
    cfg = ft.FinetuneConfig(
        data=str(synth_dir), out=str(tmp_path / "run"), labeled=4, width=4, depth=2, epochs=1,
        batch_size=2, min_steps_per_epoch=1, augment=False, kfold=2, kfold_lrs=[1e-2, 1e-3],
        kfold_batch_sizes=[2], kfold_epochs=1, preprocess=PreprocessConfig(image_size=32),
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        ft.run_finetune(cfg, progress=False, announce=None)
    assert (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "kfold.json").exists()
    ft.run_finetune(cfg, resume=True, progress=False, announce=None)
    assert len(calls) == 2 and (tmp_path / "run" / "kfold.json").exists()  # searched again

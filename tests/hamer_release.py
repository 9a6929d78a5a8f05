"""A HaMeR release folder made here: HaMeR's own classes with random weights, saved as its
release is (a Lightning checkpoint carrying the yacs `CfgNode`, `model_config.yaml` two folders
above it, `mano_mean_params.npz`, and a chumpy-layout MANO_RIGHT.pkl under `_DATA/data/mano/`).

HaMeR's source is imported from ../shared/third_party/hamer through `--hamer-dir` (the same
sys.path route users get), never copied. Its ViT-H backbone (630M parameters) is built at a
test size from HaMeR's own `ViT` class; everything else is the release architecture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from dwm_data.fixtures.mano import write_mano_models

HAMER_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "third_party" / "hamer"
EMBED_DIM = 64  # the test ViT's width (ViT-H: 1280), hence the decoder's context_dim

# model_config.yaml as HaMeR's training writes it (configs_hydra experiment hamer_vit_transformer
# + default), MANO paths relative to _DATA; only the transformer sizes are cut down.
MODEL_CONFIG = {
    "GENERAL": {"TOTAL_STEPS": 1_000_000, "LOG_STEPS": 1000, "VAL_STEPS": 1000,
                "CHECKPOINT_STEPS": 1000, "CHECKPOINT_SAVE_TOP_K": 1, "NUM_WORKERS": 4,
                "PREFETCH_FACTOR": 2},
    "TRAIN": {"LR": 1e-5, "WEIGHT_DECAY": 1e-4, "BATCH_SIZE": 8, "LOSS_REDUCTION": "mean",
              "NUM_TRAIN_SAMPLES": 2, "NUM_TEST_SAMPLES": 64, "POSE_2D_NOISE_RATIO": 0.01,
              "SMPL_PARAM_NOISE_RATIO": 0.005},
    "MODEL": {
        "IMAGE_SIZE": 256,
        "IMAGE_MEAN": [0.485, 0.456, 0.406],
        "IMAGE_STD": [0.229, 0.224, 0.225],
        "BACKBONE": {"TYPE": "vit", "PRETRAINED_WEIGHTS": "hamer_training_data/vitpose_backbone.pth"},
        "MANO_HEAD": {
            "TYPE": "transformer_decoder",
            "IN_CHANNELS": 2048,
            "TRANSFORMER_DECODER": {"depth": 1, "heads": 2, "mlp_dim": 64, "dim_head": 16,
                                    "dropout": 0.0, "emb_dropout": 0.0, "norm": "layer",
                                    "context_dim": EMBED_DIM},
        },
    },
    "MANO": {"DATA_DIR": "_DATA/data/", "MODEL_PATH": "data/mano", "GENDER": "neutral",
             "NUM_HAND_JOINTS": 15, "MEAN_PARAMS": "data/mano_mean_params.npz",
             "CREATE_BODY_POSE": False},
    "EXTRA": {"FOCAL_LENGTH": 5000, "NUM_LOG_IMAGES": 4, "NUM_LOG_SAMPLES_PER_IMAGE": 8,
              "PELVIS_IND": 0},
    "LOSS_WEIGHTS": {"KEYPOINTS_3D": 0.05, "KEYPOINTS_2D": 0.01, "GLOBAL_ORIENT": 0.001,
                     "HAND_POSE": 0.001, "BETAS": 0.0005, "ADVERSARIAL": 0.0005},
}  # fmt: skip


def small_backbone(cfg):
    """HaMeR's own ViT at a test size (its `vit(cfg)` hard-codes ViT-H)."""
    from hamer.models.backbones.vit import ViT

    return ViT(img_size=(256, 192), patch_size=16, embed_dim=EMBED_DIM, depth=1, num_heads=2,
               ratio=1, mlp_ratio=2, qkv_bias=True)  # fmt: skip


def write_release(root: Path, seed: int = 0) -> Path:
    """`root/_DATA/...` as HaMeR's demo data unpacks, with a random-weight network; returns the
    checkpoint. Needs `hamer` importable and `create_backbone` patched to `small_backbone`."""
    import pytorch_lightning as pl
    import torch
    from hamer.configs import get_config
    from hamer.models import HAMER

    data = root / "_DATA"
    mano = write_mano_models(data / "data" / "mano")
    mano["left"].unlink()  # HaMeR's demo data needs only the right hand
    rng = np.random.default_rng(seed)
    pose = np.tile([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], 16) + rng.normal(0, 0.05, 96)
    np.savez(data / "data" / "mano_mean_params.npz", pose=pose, shape=rng.normal(0, 0.3, 10),
             cam=np.array([0.9, 0.02, -0.03]))  # fmt: skip
    config = data / "hamer_ckpts" / "model_config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(MODEL_CONFIG))
    cfg = get_config(str(config), update_cachedir=False)
    cfg.defrost()
    cfg.MANO.MODEL_PATH = str(_plain_mano(mano["right"]))
    cfg.MANO.MEAN_PARAMS = str(data / "data" / "mano_mean_params.npz")
    cfg.MODEL.BACKBONE.pop("PRETRAINED_WEIGHTS")
    cfg.freeze()
    torch.manual_seed(seed)
    model = HAMER(cfg, init_renderer=False)
    with torch.no_grad():  # a trained head predicts near the mean; random weights, kept small
        for layer in (model.mano_head.decpose, model.mano_head.decshape, model.mano_head.deccam):
            layer.weight.mul_(0.05)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.strategy.connect(model)
    checkpoint = data / "hamer_ckpts" / "checkpoints" / "hamer.ckpt"
    checkpoint.parent.mkdir(parents=True)
    trainer.save_checkpoint(checkpoint)
    return checkpoint


def _plain_mano(path: Path) -> Path:
    from dwm_data.hands.mano import plain_mano_folder

    return plain_mano_folder(path)

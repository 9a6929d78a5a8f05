"""A tiny random-initialised base model in the released folder layout, for CPU runs and tests.

It has the same classes and the same 33-channel InP input as CogVideoX-Fun-V1.1-5b-InP, only small
(2 layers, 2 heads of 32, an 8-channel VAE, a one-layer T5), so the whole path (widening, LoRA,
training, sampling) runs on 2 CPU cores through the loader the 5B model uses. The tokenizer is
character-level and built in memory, so nothing is downloaded.
"""

from __future__ import annotations

import string
from pathlib import Path

from dwm_data.extras import require

TEXT_LENGTH = 32
TEXT_WIDTH = 32
INP_CHANNELS = 33  # noisy 16 | mask 1 | masked video 16, as the released InP model


def _tokenizer(folder: Path) -> None:
    tokenizers = require("tokenizers", "train")
    transformers = require("transformers", "train")
    specials = ["<pad>", "</s>", "<unk>"]
    chars = sorted(set(string.ascii_lowercase + string.digits + " .,'-"))
    vocab = {token: index for index, token in enumerate(specials + chars)}
    model = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    model.normalizer = tokenizers.normalizers.Lowercase()
    model.pre_tokenizer = tokenizers.pre_tokenizers.Split(
        tokenizers.Regex("."), behavior="isolated"
    )
    model.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=TEXT_LENGTH,
    )
    fast.save_pretrained(folder / "tokenizer")


def create_tiny_base(folder: Path, width: int, height: int, frames: int, seed: int = 0) -> Path:
    """Write the tiny base model to `folder` (diffusers layout) and return it."""
    torch = require("torch", "train")
    diffusers = require("diffusers", "train")
    transformers = require("transformers", "train")

    torch.manual_seed(seed)
    transformer = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=32,
        in_channels=INP_CHANNELS,
        out_channels=16,
        time_embed_dim=32,
        text_embed_dim=TEXT_WIDTH,
        num_layers=2,
        sample_width=width // 8,
        sample_height=height // 8,
        sample_frames=frames,
        patch_size=2,
        max_text_seq_length=TEXT_LENGTH,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False,
    )
    transformer.save_pretrained(folder / "transformer")
    vae = diffusers.AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=4,
        temporal_compression_ratio=4,
        scaling_factor=0.7,
        sample_height=height,
        sample_width=width,
    )
    vae.save_pretrained(folder / "vae")
    config = transformers.T5Config(
        vocab_size=64, d_model=TEXT_WIDTH, d_kv=16, d_ff=64, num_layers=1, num_heads=2
    )
    transformers.T5EncoderModel(config).save_pretrained(folder / "text_encoder")
    _tokenizer(folder)
    diffusers.CogVideoXDDIMScheduler(
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=True,
        snr_shift_scale=1.0,
    ).save_pretrained(folder / "scheduler")
    return folder

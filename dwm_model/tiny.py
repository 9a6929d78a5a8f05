"""A tiny random-initialised base model with the traits of CogVideoX-Fun-V1.1-5b-InP as downloaded.

It has the same classes and the same 33-channel InP input as the released model, only small (2
layers, 2 heads of 32, an 8-channel VAE, a one-layer T5), so the whole path (widening, LoRA,
training, sampling) runs on 2 CPU cores through the loader the 5B model uses. What a download looks
like is reproduced, not what our loader happens to read: each config.json carries the released
file's keys and only those (the transformer's `add_noise_in_inpaint_model` included), the text
encoder's weights are sharded with an index (`model-0000N-of-0000M.safetensors`) while the
transformer's and the VAE's are one file each, and the tokenizer folder is T5's SentencePiece form
only (`spiece.model`, `tokenizer_config.json`, `special_tokens_map.json`, `added_tokens.json`; no
`tokenizer.json`), trained here as T5's was (unigram, `<pad>` 0, `</s>` 1, `<unk>` 2, 100 sentinels
above the pieces). The key sets follow THUDM/CogVideoX-5b's files (diffusers layout), which the Fun
release reuses.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from dwm_data.extras import require

TEXT_LENGTH = 32
TEXT_WIDTH = 32
INP_CHANNELS = 33  # noisy 16 | mask 1 | masked video 16, as the released InP model
EXTRA_IDS = 100
PIECES = 96  # sentencepiece vocabulary (T5: 32000); the corpus below allows about 100
DIFFUSERS_VERSION = "0.31.0.dev0"
SHARD = "40KB"  # the text encoder in two files, as the release's 9.5 GB in two

TRANSFORMER_KEYS = (
    "activation_fn", "add_noise_in_inpaint_model", "attention_bias", "attention_head_dim",
    "dropout", "flip_sin_to_cos", "freq_shift", "in_channels", "max_text_seq_length",
    "norm_elementwise_affine", "norm_eps", "num_attention_heads", "num_layers", "out_channels",
    "patch_size", "sample_frames", "sample_height", "sample_width", "spatial_interpolation_scale",
    "temporal_compression_ratio", "temporal_interpolation_scale", "text_embed_dim",
    "time_embed_dim", "timestep_activation_fn", "use_rotary_positional_embeddings",
)  # fmt: skip
VAE_KEYS = (
    "act_fn", "block_out_channels", "down_block_types", "force_upcast", "in_channels",
    "latent_channels", "latents_mean", "latents_std", "layers_per_block", "norm_eps",
    "norm_num_groups", "out_channels", "sample_height", "sample_width", "scaling_factor",
    "shift_factor", "temporal_compression_ratio", "up_block_types", "use_post_quant_conv",
    "use_quant_conv",
)  # fmt: skip

# Caption-like words for the tokenizer's training text: the pieces it learns are those of prompts.
_WORDS = {
    "verb": "pick push pull open close lift rotate slide grab place pour wipe press turn",
    "thing": "box cup drawer door bottle lid mug bowl knife towel switch handle book phone",
    "where": "table shelf counter sink floor cabinet tray plate basket stove window chair",
    "how": "slowly gently quickly carefully firmly",
    "side": "left right front back top edge corner middle",
}


def _caption_corpus() -> list[str]:
    groups = [words.split() for words in _WORDS.values()]
    corpus = []
    for n in range(420):  # word groups of coprime-ish sizes: every pairing shows up
        verb, thing, where, how, side = (group[n % len(group)] for group in groups)
        corpus.append(f"The {side} hand {how} {verb}s the {thing} on the {where}.")
        corpus.append(f"A person reaches {side} and {verb}s a {thing} off the {where}, {how}.")
    return corpus


def _tokenizer(folder: Path) -> None:
    """T5's tokenizer folder: spiece.model and the three json files transformers 4 writes."""
    spm = require("sentencepiece", "train")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_caption_corpus()),
        model_writer=model,
        model_type="unigram",
        vocab_size=PIECES,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    out = folder / "tokenizer"
    out.mkdir(parents=True)
    (out / "spiece.model").write_bytes(model.getvalue())
    sentinels = [f"<extra_id_{n}>" for n in range(EXTRA_IDS)]
    specials = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    added = {token: PIECES - 1 + EXTRA_IDS - n for n, token in enumerate(sentinels)}
    decoder = {
        str(index): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for token, index in sorted({**specials, **added}.items(), key=lambda item: item[1])
    }
    config = {
        "added_tokens_decoder": decoder,
        "additional_special_tokens": sentinels,
        "clean_up_tokenization_spaces": True,
        "eos_token": "</s>",
        "extra_ids": EXTRA_IDS,
        "legacy": True,
        "model_max_length": TEXT_LENGTH,
        "pad_token": "<pad>",
        "sp_model_kwargs": {},
        "tokenizer_class": "T5Tokenizer",
        "unk_token": "<unk>",
    }
    special_map = {
        "additional_special_tokens": sentinels,
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    }
    _write(out / "tokenizer_config.json", config)
    _write(out / "special_tokens_map.json", special_map)
    _write(out / "added_tokens.json", added)


def _text_encoder(folder: Path) -> None:
    """T5 v1.1 (gated GELU, untied), the config reduced to the released file's keys."""
    transformers = require("transformers", "train")
    vocab = -(-(PIECES + EXTRA_IDS) // 128) * 128  # rounded up as 32100 -> 32128
    sizes = {"d_ff": 64, "d_kv": 16, "d_model": TEXT_WIDTH, "num_heads": 2, "num_layers": 1}
    config = {
        "_name_or_path": "google/t5-v1_1-xxl",
        "architectures": ["T5EncoderModel"],
        "classifier_dropout": 0.0,
        **sizes,
        "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new",
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "is_gated_act": True,
        "layer_norm_epsilon": 1e-06,
        "model_type": "t5",
        "num_decoder_layers": sizes["num_layers"],
        "output_past": True,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.44.0.dev0",
        "use_cache": True,
        "vocab_size": vocab,
    }
    model = transformers.T5EncoderModel(transformers.T5Config(**config))
    transformers.utils.logging.disable_progress_bar()  # its shard-writing bar
    out = folder / "text_encoder"
    model.save_pretrained(out, max_shard_size=SHARD)
    _write(out / "config.json", dict(sorted(config.items())))


def _scheduler(folder: Path) -> None:
    diffusers = require("diffusers", "train")
    config = {
        "_class_name": "CogVideoXDDIMScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "num_train_timesteps": 1000,
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "sample_max_value": 1.0,
        "set_alpha_to_one": True,
        "snr_shift_scale": 1.0,
        "steps_offset": 0,
        "timestep_spacing": "trailing",
        "trained_betas": None,
    }
    diffusers.CogVideoXDDIMScheduler.from_config(config)  # the class takes every key
    _write(folder / "scheduler" / "scheduler_config.json", config)


def create_tiny_base(folder: Path, width: int, height: int, frames: int, seed: int = 0) -> Path:
    """Write the tiny base model to `folder` (diffusers layout, as downloaded) and return it."""
    torch = require("torch", "train")
    diffusers = require("diffusers", "train")

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
    )
    transformer.save_pretrained(folder / "transformer")
    _released_keys(folder / "transformer", TRANSFORMER_KEYS, add_noise_in_inpaint_model=True)
    vae = diffusers.AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=4,
        temporal_compression_ratio=4,
        scaling_factor=0.7,
        # Tiles are half the sample size. The released VAE's sample size is its frame size, so
        # 480x720 frames are tiled; here twice the frame size keeps tiles out: diffusers' overlap
        # arithmetic miscounts tiles of 3 latents (48x64 frames would decode to 68x76).
        sample_height=2 * height,
        sample_width=2 * width,
    )
    vae.save_pretrained(folder / "vae")
    _released_keys(folder / "vae", VAE_KEYS)
    _text_encoder(folder)
    _tokenizer(folder)
    _scheduler(folder)
    _write(
        folder / "model_index.json",
        {
            "_class_name": "CogVideoXPipeline",
            "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
            "text_encoder": ["transformers", "T5EncoderModel"],
            "tokenizer": ["transformers", "T5Tokenizer"],
            "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
            "vae": ["diffusers", "AutoencoderKLCogVideoX"],
        },
    )
    return folder


def _released_keys(part: Path, keys: tuple[str, ...], **extra) -> None:
    """Rewrite a saved config.json with exactly the released file's keys: today's diffusers writes
    keys the release predates (`patch_size_t`, `ofs_embed_dim`, ...), which must come from the
    class defaults when loading a real download too."""
    saved = json.loads((part / "config.json").read_text())
    config = {"_class_name": saved["_class_name"], "_diffusers_version": DIFFUSERS_VERSION}
    config |= {key: extra[key] if key in extra else saved[key] for key in keys}
    _write(part / "config.json", config)


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")

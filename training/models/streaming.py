"""A DS-CNN with valid time padding, run on a stream: every layer computes each of its rows once.

A windowed detector recomputes the whole window (49 frames, 12 output rows per layer for
`ds_cnn_s_fb40_valid`) at every stride although only a few frames are new. Here each layer keeps
a ring of the last rows it needs (the stem: its kernel's frames less one stride; a 3-row depthwise
conv: two rows), so a new stem row costs one row of every layer. Global average pooling becomes a
sum over the last `pool_rows` final rows. The logits at each output equal the windowed model's on
the window that ends there (the tests check it on every aligned window); they are produced every
`frames_per_output` frames (the stem's time stride: 20 ms on 10 ms frames), and a detector keeps
every k-th for a k x 20 ms stride.

Only valid time padding streams exactly: with SAME padding the window's edge rows see zeros that a
stream replaces with real frames, so such a model is refused by name.
"""

from __future__ import annotations

from collections import deque

import torch

from polykws.training.models.ds_cnn import DSCNN


class StreamingDSCNN:
    """Stateful step-by-step inference of an eval-mode `DSCNN` whose spec pads time "valid".

    `push(frames)` takes (N, T, features) new feature frames (any T, also 0) and returns the
    logits of every window completed by them, as (N, K, classes) with the number of frames seen
    when each completed, (K,). `reset()` empties every ring (a new stream).
    """

    def __init__(self, model: DSCNN) -> None:
        spec = model.spec
        if spec.time_padding != "valid":
            raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} pads time {spec.time_padding!r}; "
                             "only a model with time_padding='valid' streams exactly")
        if model.training:
            raise ValueError("stream an eval-mode model (model.eval()): dropout and batch statistics differ per call")
        self.model = model
        (self.stem_frames, _), (self.frames_per_output, _) = spec.first_kernel, spec.first_stride
        frames = model.input_shape[0]
        self.window_frames = frames
        # Rows of the final map over a window: the stem's valid rows less two per 3-row block.
        self.pool_rows = (frames - self.stem_frames) // self.frames_per_output + 1 - 2 * spec.num_blocks
        self.reset()

    def reset(self) -> None:
        self._frames: torch.Tensor | None = None
        self._rings: list[deque] = [deque(maxlen=2) for _ in self.model.blocks]
        self._pool: deque = deque(maxlen=self.pool_rows)
        self.frames_seen = 0
        self._next_stem_end = self.stem_frames  # frames seen when the next stem row is complete

    @torch.no_grad()
    def push(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        if frames.dim() != 3 or frames.shape[2] != self.model.input_shape[1]:
            raise ValueError(f"push takes (N, T, {self.model.input_shape[1]}) frames, got {tuple(frames.shape)}")
        m = self.model
        buf = frames if self._frames is None else torch.cat([self._frames, frames], dim=1)
        self.frames_seen += frames.shape[1]
        start = self.frames_seen - buf.shape[1]  # stream index of buf[:, 0]
        outputs, ends = [], []
        while self._next_stem_end <= self.frames_seen:
            lo = self._next_stem_end - self.stem_frames - start
            x = buf[:, lo: lo + self.stem_frames].unsqueeze(1)
            row = torch.relu(m.bn0(m.conv0(m.pad0(x))))  # (N, C, 1, F')
            for block, ring in zip(m.blocks, self._rings):
                x = torch.cat([*ring, row], dim=2)  # the 3 rows the depthwise kernel spans, once the ring is full
                ring.append(row)
                if x.shape[2] < 3:
                    row = None
                    break
                row = torch.relu(block.bn_pw(block.pw(torch.relu(block.bn_dw(block.dw(x))))))
            if row is not None:
                self._pool.append(row)
                if len(self._pool) == self.pool_rows:
                    pooled = torch.cat(list(self._pool), dim=2).mean(dim=(2, 3))
                    outputs.append(m.forward_head(pooled))
                    ends.append(self._next_stem_end)
            self._next_stem_end += self.frames_per_output
        # Keep the frames the next stem rows still need.
        keep_from = self._next_stem_end - self.stem_frames - start
        self._frames = buf[:, max(0, keep_from):]
        n = frames.shape[0]
        logits = torch.stack(outputs, dim=1) if outputs else frames.new_zeros((n, 0, m.num_classes))
        return logits, ends

    def window_start(self, end_frame: int) -> int:
        """The first frame of the window whose logits completed at `end_frame` frames (stem-aligned)."""
        return end_frame - self.stem_frames - self.frames_per_output * (self.pool_rows - 1 + 2 * len(self.model.blocks))


def stream_macs_per_second(model: DSCNN, frame_step_ms: float = 10.0, seconds: float = 2.0) -> float:
    """Multiply-accumulates per second of audio that `StreamingDSCNN` spends on `model`, counted
    by the profiler's per-layer rule on the layers a steady-state stream actually runs (every
    stem, block and head call after the first window is full)."""
    from polykws.training.profile import _LEAF_KINDS, _macs

    streamer = StreamingDSCNN(model)
    feats = model.input_shape[1]
    streamer.push(torch.zeros(1, streamer.window_frames, feats))
    total = [0]
    hooks = [m.register_forward_hook(lambda mod, _i, out: total.__setitem__(0, total[0] + _macs(mod, out)))
             for m in model.modules() if isinstance(m, _LEAF_KINDS)]
    try:
        frames = int(round(seconds * 1000.0 / frame_step_ms))
        streamer.push(torch.zeros(1, frames, feats))
    finally:
        for h in hooks:
            h.remove()
    return total[0] / seconds

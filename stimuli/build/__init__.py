"""The stimulus build: stages, resumable pieces, shards, and the final bundle.

Work is cut into *pieces*, each finished piece written atomically and
recorded as ``BUNDLE/.build/<stage>/<piece>.json`` (after its images are in
``BUNDLE/images/``). A build that is stopped at any moment, ``kill -9``
included, resumes by skipping recorded pieces; since every piece is
deterministic, the resumed bundle equals an uninterrupted one.

Stages and pieces:
1. ``pool``: one piece per (network, chunk of ``pool.chunk_size`` images):
   that chunk's top-k per unit. Merging chunks is exact (see pool.py).
2. ``references``: one piece per (network, method, seed, group of
   ``units_per_run`` units): one optimisation run.
3. ``queries``: one piece per (network, unit, rank < top_k): the occlusion
   query pair of the unit's rank-th image. Needs every pool piece.
4. finalize: practice and catch trials, then ``manifest.json``.

Sharding (``--shard i/n``, or torchrun's RANK/WORLD_SIZE): shard i takes
pieces i, i+n, i+2n... of every stage, in the same bundle folder (a shared
file system). Before stage 3 a shard waits for the other shards' pool pieces,
doing its reference pieces first; shard 0 then waits for every piece and
writes the manifest. A job array whose shards cannot all run at once still
completes: run the build once more without ``--shard`` at the end, it only
does what is missing.

Practice and catch trials come from each unit's *spare* images (ranks
``per_unit..top_k-1``), never from the images of the main trials:
- practice: practice.trials x practice.max_rounds spare pairs (new pictures in every round) with
  the largest relative activation difference (the easiest), one per unit before any unit is used
  twice, each of its own photo, dealt into rounds of equal difficulty;
- catch: a spare pair of unit u whose wrong image is replaced, as in
  Zimmermann et al. (2021), by an occluded image of *another* unit's image
  (that unit's argmin-occluded image, of a different photo; never an image a practice or main
  trial shows: `stimuli check` refuses a bundle sharing an image between trial kinds), chosen so that
  unit u's activation on it is below its activation on the correct image.
  The correct answer is then the only option that is a copy of the base
  image: answerable in every condition, `none` included, by anyone who
  looks; the instructions tell participants so. `stimuli check` verifies this
  on the pixels (`trials.check_copies`; the design: docs/stimuli.md).

Modules, one per seam: ``plan`` (pieces, shards, --dry-run), ``store`` (the
resumable piece store), ``pool_stage``, ``reference_stage``, ``trials``
(queries stage; main, practice and catch trials), ``finalize`` (manifest,
provenance, `stimuli check`), ``builder`` (one shard's run).
"""
from ..config import StimuliError
from .builder import Builder, build
from .finalize import check_bundle, class_label
from .plan import Piece, Shard, check_pool_size, describe_plan, network_input_size, plan_pieces, plan_rows
from .store import PLAN_FILE, RUNTIME_DIR, WORK_DIR, PieceStore
from .trials import pair_side, select_practice

__all__ = ["PLAN_FILE", "RUNTIME_DIR", "WORK_DIR", "Builder", "Piece", "PieceStore", "Shard", "StimuliError",
           "build", "check_bundle", "check_pool_size", "class_label", "describe_plan", "network_input_size",
           "pair_side", "plan_pieces", "plan_rows", "select_practice"]

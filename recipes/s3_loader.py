"""Prodigy recipe `stream_from_s3`: annotate S3 images, resumable, on the tracker's state DB.

    prodigy stream_from_s3 DATASET BUCKET [PREFIX] --label CAT,DOG -F recipes/s3_loader.py

Thin glue: `prodigy.recipe` is the only Prodigy name used here; the recipe itself is
`tracker.recipe.stream_from_s3` (options and behaviour documented there and in docs/recipe.md).
Registered twice: `stream_from_s3` (the seed's command line) and `stream-from-s3` (the name
the seed's code registered).
"""

import prodigy

from tracker.recipe import RECIPE_ARGS, recipe_function

stream_from_s3 = prodigy.recipe("stream_from_s3", **RECIPE_ARGS)(recipe_function())
stream_from_s3_dashed = prodigy.recipe("stream-from-s3", **RECIPE_ARGS)(recipe_function())

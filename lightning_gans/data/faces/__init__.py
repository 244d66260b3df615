"""Face preparation (FFHQ recipe, Karras et al. 2019): decode photos, detect faces and 5 landmarks
(MTCNN, Zhang et al. 2016), align, filter and write them into shards.

Submodules: `decode` (photo bytes -> RGB), `sources` (folder/zip/tar listing), `mtcnn` (detector),
`dlib_backend` (optional second detector: dlib + 68 landmarks, `--backend dlib`), `align` (FFHQ
crop), `filters` (sharpness, pHash), `worker` (one photo), `state` (OUT and resume), `prepare`
(the `prepare-faces` command). Importing this package loads none of them, so
torch is only imported where a detector runs.
"""

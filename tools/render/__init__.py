"""A small exact ray caster for synthetic evaluation data with ground truth (relative pose now; stereo, depth,
visual odometry and point tracking sequences later).

Modules: ``scene`` (geometry: textured parallelograms, boxes, pinhole ``Camera``, ray casting), ``frame``
(``render``: supersampled colour plus per-pixel depth, surface id and normal), ``shading`` (point lights, ambient,
hard shadows), ``sensor`` (vignetting, blur, exposure, Poisson-Gaussian noise, white balance, gamma, JPEG),
``textures`` (photos and material scans from local files, plain paint), ``rooms`` (scene builders), ``views``
(covisibility, parallax and plane statistics of views and view pairs).

Everything is numpy on the CPU and deterministic: the same scene, camera and random generator give the same bytes.
It is not a general renderer: planar surfaces only, Lambertian shading, no inter-reflections, no lens distortion.
"""

"""Pretrained feature networks and their weight files (one resolver for all: weights.py).

Below metrics/, synthesis/, models/, interop/ and data/, which all import it; it imports only
checkpoint.py and errors.py (and torch). weights.py: the table of weight files (kind, file, env
var, where it comes from, sha256) and their resolvers; vgg.py, lpips.py: the LPIPS network.
"""

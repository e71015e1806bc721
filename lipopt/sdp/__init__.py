"""LipSDP (Fazlyab et al., NeurIPS 2019): certified l2 upper bounds from a linear matrix inequality.

:mod:`lipopt.sdp.lipsdp` builds and solves the LMI and certifies its solution in float64;
:mod:`lipopt.sdp.neuron_method`, :mod:`lipopt.sdp.layer_method` and :mod:`lipopt.sdp.local_method` are the
registered methods ``lipsdp-neuron``, ``lipsdp-layer`` and ``lipsdp-local``. Nothing heavy is imported here.
"""

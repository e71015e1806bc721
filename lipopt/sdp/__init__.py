"""LipSDP (Fazlyab et al., NeurIPS 2019): certified l2 upper bounds from a linear matrix inequality.

:mod:`lipopt.sdp.lipsdp` builds and solves the LMI and certifies its solution in float64;
:mod:`lipopt.methods.lipsdp_neuron`, :mod:`lipopt.methods.lipsdp_layer` and
:mod:`lipopt.methods.lipsdp_local` are the registered methods ``lipsdp-neuron``, ``lipsdp-layer`` and
``lipsdp-local``. Nothing heavy is imported here.
"""

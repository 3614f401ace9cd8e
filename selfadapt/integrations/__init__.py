"""Self-adaptive training inside other people's frameworks.

- :mod:`selfadapt.integrations.lightning`: SAT for your own ``LightningModule``
  (``pip install 'selfadapt[lightning]'``).

Each integration imports its framework only when it is imported itself; a missing framework is one
:class:`selfadapt.errors.MissingExtra` naming the extra to install.
"""

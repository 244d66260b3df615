"""Pure nn.Module networks: constructed from keyword arguments, no training logic or I/O."""

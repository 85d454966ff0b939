"""Synthetic instance masks (paper Sec. 4.1): shape bank, cell count, adhesive placement, colouring."""

"""``pyctr``: ctr's commands over :mod:`pycontainerd.client`, one module per resource."""

"""Seeing inside a network: its learned filters, the feature maps one input makes, and class-activation maps.

    trained.py      a graph and its torch module with weights (an archviz checkpoint, a state dict, or random init)
    layers.py       layer names checked against the graph; the automatic choice for a class-activation map
    images.py       an image file or a dataset sample as the model's input, and as a picture to draw on
    capture.py      forward hooks that copy chosen layers' outputs, removed afterwards
    filters.py      a layer's kernels as a picture grid
    activations.py  feature maps as picture grids
    cam.py          Grad-CAM and Grad-CAM++

Everything here runs the torch module built from the graph (archviz/torch_build.py) and hands numpy arrays to
archviz/render/pictures.py, which draws them.
"""

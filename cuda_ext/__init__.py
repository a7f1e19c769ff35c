"""C++/CUDA sources of ``nerfhead._C``; ``build.py`` describes how to compile them."""

"""Where processed data lands: HDF5 files readable while being written."""

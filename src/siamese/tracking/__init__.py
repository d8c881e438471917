"""Object tracking with a fully-convolutional Siamese network (SiamFC)."""

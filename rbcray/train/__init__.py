"""Training loops as plain libraries (pix2pixHD, downstream models); Ray Train wraps them."""

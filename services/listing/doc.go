package listing

"""The tagger's own speed: the race against the seed's loop (`race`), the char encoder
(`chars`), memory per epoch (`memory`), tagging raw text (`text`). Built on the library
(postag/) and the experiment files as `postag train` reads them."""

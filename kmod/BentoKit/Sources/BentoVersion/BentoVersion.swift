/// The Bento release: what bento-upgraded, bentoctl, mkfs.xv6 and fsck.xv6
/// print for --version. The Makefile reads the number from this line
/// (`make -s version`), so keep it a plain string literal.
public let bentoVersion = "0.9.0"

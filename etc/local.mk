# etc/: the commented default configuration.
centrifugoconfdir = $(sysconfdir)/centrifugo
dist_centrifugoconf_DATA = etc/centrifugo.conf

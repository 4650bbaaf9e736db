# man/: manual pages.
dist_man_MANS += man/centrifugo.8 man/centrifugo.conf.5 man/centrifugo-ctl.1 \
	man/centrifugo-bench.1

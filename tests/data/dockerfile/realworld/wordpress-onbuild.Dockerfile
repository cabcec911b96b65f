FROM php:8.2-apache
RUN set -eux; \
	apt-get update; \
	apt-get install -y --no-install-recommends ghostscript; \
	rm -rf /var/lib/apt/lists/*
RUN { \
		echo 'opcache.memory_consumption=128'; \
		echo 'opcache.interned_strings_buffer=8'; \
		echo 'opcache.max_accelerated_files=4000'; \
	} > /usr/local/etc/php/conf.d/opcache-recommended.ini
VOLUME /var/www/html
ONBUILD COPY . /var/www/html/
COPY --chown=www-data:www-data wp-config-docker.php /usr/src/wordpress/
COPY docker-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["apache2-foreground"]

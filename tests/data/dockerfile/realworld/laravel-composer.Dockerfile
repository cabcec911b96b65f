# syntax=docker/dockerfile:1
FROM composer:2 AS vendor
WORKDIR /app
COPY composer.json composer.lock ./
RUN --mount=type=cache,target=/tmp/cache \
    composer install --no-dev --no-scripts --no-autoloader --prefer-dist
COPY . .
RUN composer dump-autoload --optimize --classmap-authoritative

FROM node:20-alpine AS assets
WORKDIR /app
COPY package.json package-lock.json vite.config.js ./
RUN npm ci
COPY resources/ resources/
RUN npm run build

FROM php:8.3-fpm-alpine
RUN apk add --no-cache icu-dev libzip-dev \
 && docker-php-ext-install intl opcache pdo_mysql zip
ENV APP_ENV=production \
    PHP_OPCACHE_VALIDATE_TIMESTAMPS=0
WORKDIR /var/www/html
COPY --from=vendor --chown=www-data:www-data /app /var/www/html
COPY --from=assets /app/public/build ./public/build
COPY docker/php/opcache.ini $PHP_INI_DIR/conf.d/opcache.ini
USER www-data
EXPOSE 9000
CMD ["php-fpm"]

# escape=`

FROM mcr.microsoft.com/dotnet/framework/sdk:4.8-windowsservercore-ltsc2022 AS build
WORKDIR C:\app
COPY *.sln .
COPY aspnetapp\*.csproj .\aspnetapp\
COPY aspnetapp\*.config .\aspnetapp\
RUN nuget restore
COPY aspnetapp\. .\aspnetapp\
WORKDIR C:\app\aspnetapp
RUN msbuild /p:Configuration=Release -r:False

FROM mcr.microsoft.com/dotnet/framework/aspnet:4.8-windowsservercore-ltsc2022 AS runtime
WORKDIR C:\inetpub\wwwroot
COPY --from=build C:\app\aspnetapp\. .\

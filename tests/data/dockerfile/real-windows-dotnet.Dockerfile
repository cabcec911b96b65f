# escape=`

FROM mcr.microsoft.com/dotnet/sdk:8.0-windowsservercore-ltsc2022 AS build
WORKDIR C:\src
COPY *.csproj .\
RUN dotnet restore
COPY . .\
RUN dotnet publish -c Release -o C:\app --no-restore

FROM mcr.microsoft.com/dotnet/aspnet:8.0-windowsservercore-ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue';"]
ENV ASPNETCORE_URLS=http://+:80 `
    DOTNET_RUNNING_IN_CONTAINER=true
RUN New-Item -ItemType Directory -Path C:\logs | Out-Null; `
    icacls C:\logs /grant 'Users:(OI)(CI)F'
WORKDIR C:\app
COPY --from=build C:\app .
EXPOSE 80
USER ContainerUser
ENTRYPOINT ["dotnet", "WebApp.dll"]
